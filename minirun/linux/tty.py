"""Pseudo-terminals for `run -t` — pty(7), tty_ioctl(4)."""
import fcntl
import os
import struct
import termios
import tty

from minirun.linux import explain


def open_pty():
    """A new pty pair (master, slave) from the devpts mounted at /dev/pts — openpty(3)."""
    explain.step('openpty() via open("/dev/ptmx")', "pty(7)")
    return os.openpty()


def make_controlling_terminal(fd):
    """Make `fd` the controlling terminal of our session (new, and with none
    yet: see process.new_session) — TIOCSCTTY, tty_ioctl(4)."""
    explain.step(f"ioctl({fd}, TIOCSCTTY)", "tty_ioctl(4)")
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


def get_window_size(fd):
    return fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))


def set_window_size(fd, winsize):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, winsize)


def enter_raw_mode(fd):
    """Put the user's terminal in raw mode; returns what restore_mode needs."""
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # TCSAFLUSH would drop what the user typed ahead
    return saved


def restore_mode(fd, saved):
    termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
