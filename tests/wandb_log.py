"""Read a W&B offline run file (``run-*.wandb``) back into its records, for the tests.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) and then
LevelDB-log framing -- 32 KiB blocks of chunks, each with a header ``<crc32, length, type>``
(type 1 full, 2 first, 3 middle, 4 last; the CRC is zlib's CRC-32 of the type byte and the data),
whose data are serialised ``wandb_internal_pb2.Record`` protobufs (the schema shipped with wandb).
wandb 0.31 ships no Python reader for it; this one checks every CRC.
"""
import json
import struct
import zlib

BLOCK = 32768


def records(path):
    """The ``Record`` protobufs of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    if (ident, magic, version) != (b":W&B", 0xBEE1, 0):
        raise ValueError(f"{path}: not a W&B log (header {ident!r}, {magic:#x}, {version})")
    pos, pieces = 7, []
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:                                     # a block's tail too short for a header: padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:                                    # zero fill at the end of a block
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        if zlib.crc32(bytes([kind]) + chunk) != crc:
            raise ValueError(f"{path}: CRC mismatch at byte {pos}")
        pos += 7 + length
        pieces = [chunk] if kind in (1, 2) else pieces + [chunk]
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            yield record


def history(path) -> dict:
    """``{step: {key: value}}`` of every ``run.log`` in the file (W&B's own keys ``_*`` left out)."""
    out = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            out.setdefault(r.history.step.num, {}).update({k: v for k, v in items.items() if not k.startswith("_")})
    return out
