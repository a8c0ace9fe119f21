"""Child processes that a test interrupts with SIGINT, as Ctrl-C in a terminal would."""
import signal
import subprocess


def _sigint_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_interruptible(args, **kwargs) -> subprocess.Popen:
    """:class:`subprocess.Popen` whose child takes SIGINT like a foreground job.

    A job that a non-interactive shell starts in the background (``cmd &``, as a CI runner may
    start the suite) inherits SIGINT *ignored*, and Python then never installs its
    KeyboardInterrupt handler: the child would not notice the test's Ctrl-C. Reset it first.
    """
    return subprocess.Popen(args, preexec_fn=_sigint_default, **kwargs)
