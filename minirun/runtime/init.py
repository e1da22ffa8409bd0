"""--init: a small PID 1 of our own, like tini or docker-init.

PID 1 of a PID namespace is special: the kernel delivers it only the signals
it has a handler for, and every orphan in the namespace becomes its child.
A program not written to be PID 1 ignores SIGTERM and leaves zombies behind.
With --init, the container's first process (already a Python process) stays
PID 1: it forks the program, forwards signals to it, reaps every orphan, and
exits with the program's status.
"""
import os
import signal

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)


def fork_program(close_in_init=()):
    """Returns in the child, which goes on to exec the program. The parent
    stays PID 1, closing `close_in_init` (the start channel, the terminal)."""
    pid = os.fork()
    if pid == 0:
        return
    for fd in close_in_init:
        os.close(fd) if isinstance(fd, int) else fd.close()
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    while True:
        try:
            reaped, status = os.wait()  # reaps orphans too
        except ChildProcessError:
            os._exit(0)
        if reaped == pid:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)
