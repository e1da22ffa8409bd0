"""The errors a user sees. Each carries one clear line and the exit status.

Exit statuses follow `docker run`: 125 when minirun itself fails (bad flag,
unknown image...), 126 when the command cannot be invoked, 127 when it is not
found. Everything else is the container's own exit status.
"""
import os
import sys


def exit_now(status):
    """End the command with `status`, skipping Python's shutdown: freeing
    every module and object (~10 ms once a run's modules are imported)
    does nothing for a command that has finished. Only what it printed
    needs flushing first; os._exit(2) does the rest. A SystemExit's code
    is accepted as sys.exit takes it (None, an int, or a message)."""
    if status is None:
        status = 0
    elif not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):     # a closed pipe: nothing more to say
            pass
    os._exit(status)


class MinirunError(Exception):
    """A failure the user can act on; the CLI prints it as one line."""

    exit_code = 125


class UsageError(MinirunError):
    """Bad flags or arguments."""


class ImageNotFound(MinirunError):
    """No image of that name in the local store."""


class ContainerNotFound(MinirunError):
    """No container of that id or name."""


class DockerfileError(MinirunError):
    """A Dockerfile that cannot be parsed or built; the message names file:line.
    Exit status 1, as `docker build` gives for a failed build."""
    exit_code = 1

    def __init__(self, message, path="Dockerfile", line=None):
        where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(where + message)
        self.line = line


class ExecError(MinirunError):
    """The container's command could not be executed (126) or found (127)."""

    def __init__(self, message, exit_code=127):
        super().__init__(message)
        self.exit_code = exit_code


class KernelError(MinirunError):
    """A system call failed; the message names the call, its path and errno."""


class RegistryError(MinirunError):
    """A registry refused, failed, or sent what does not check out."""
