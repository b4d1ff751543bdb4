"""Fixtures of the hostile-input suite."""

import subprocess

import pytest


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size="8k", readonly=False)``: a real small (or read-only) file system, unmounted after."""
    mounts = []

    def mount(name, size="8k", readonly=False):
        path = tmp_path / name
        path.mkdir()
        options = "size={},mode=0777{}".format(size, ",ro" if readonly else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root): {}".format(proc.stderr.strip()))
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
