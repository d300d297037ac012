"""Is an object's plaintext on disk? The check behind the encrypted server's figures.

The big PUT streams one random 1 MiB block over and over, and its result carries 64
bytes of that block (`probe`); every file holding the object's plaintext contains them
hundreds of times, while AES-GCM ciphertext contains them with probability ~2^-512.
`files_holding()` lists the files under a data directory that contain the probe; run
on the unencrypted server's directory as well, it shows the scan does find plaintext,
so "none under the encrypted server's" means something.
"""

from __future__ import annotations

import os

BLOCK = 8 << 20


def file_holds(path: str, needle: bytes) -> bool:
    """Whether the file contains `needle`, read in 8 MiB blocks (overlapping by one
    needle, so a match across a block boundary counts)."""
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            if needle in tail + block[: len(needle) - 1] or needle in block:
                return True
            tail = block[-(len(needle) - 1) :]
    return False


def files_holding(root: str, needle: bytes) -> list[str]:
    """The regular files under `root` (relative paths, sorted) that contain `needle`."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path) and file_holds(path, needle):
                found.append(os.path.relpath(path, root))
    return sorted(found)


def check(
    encrypted_root: str, encrypted_probe: str, plain_root: str | None, plain_probe: str | None
) -> dict[str, object]:
    """Scan the encrypted server's data for its big object's probe and, as the control,
    the unencrypted server's for its own. `verified` only when the control finds its
    plaintext and the encrypted directory holds none."""
    leaked = files_holding(encrypted_root, bytes.fromhex(encrypted_probe))
    control = (
        files_holding(plain_root, bytes.fromhex(plain_probe))
        if plain_root is not None and plain_probe
        else None
    )
    return {
        "plaintext_files": leaked,
        "control_files": control,
        "verified": not leaked and bool(control),
    }
