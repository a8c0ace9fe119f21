"""What every command of the toolkit shares: parsing, one-line errors, progress, signals, result files.

This floor imports nothing of the toolkit; ``simulate``, ``nets`` and ``paper_figures`` use it.

=============  ==============================================================================
``args``       :class:`CliParser` (one-line errors, exit 2; negative numbers read as values),
               option validators, :func:`cli_fail`, :func:`writable_dir`, :func:`given_options`
``progress``   :class:`Progress`: tqdm's bar on a terminal, a plain line every 30 s in a log
``signals``    Ctrl-C / SIGTERM: stop cleanly after the current step, exit status 130
``files``      results as JSON / CSV / NPZ, written atomically (temporary file renamed into place);
               :class:`CSVStream`, a table appended row by row and flushed (crash-safe records)
``resources``  memory and cores, checked before work starts (one-line refusal or warning)
=============  ==============================================================================
"""
import importlib

#: public name -> submodule, imported on first use (PEP 562): a command's parser needs ``cli.args``
#: only, so start-up (and a Ctrl-C in its first moments) does not wait for numpy or tqdm
_EXPORTS = {**dict.fromkeys(("CliParser", "NEGATIVE_NUMBER", "cli_fail", "os_error_line", "writable_dir",
                             "pos_float", "int_at_least", "given_options"), "args"),
            **dict.fromkeys(("atomic_write", "to_jsonable", "write_csv", "write_json", "write_npz", "file_sha256",
                             "write_manifest", "verify_manifest", "MANIFEST_NAME", "remove_temporaries", "CSVStream"),
                            "files"),
            "Progress": "progress",
            **dict.fromkeys(("available_memory", "usable_cores", "format_bytes", "check_memory", "plain_warnings"),
                            "resources"),
            **dict.fromkeys(("catch_interrupts", "deferred_interrupts", "exit_process", "stop_on_signals",
                             "take_interrupt"), "signals")}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"cli.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cli' has no attribute {name!r}")


__all__ = list(_EXPORTS)
