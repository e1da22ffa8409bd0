"""Pull and push progress as Docker prints it: one line per layer.

On a terminal the lines are redrawn in place (bytes so far, the total, the
rate); elsewhere each change of state is one plain line, and byte counts
are left out; `quiet` prints nothing. Layers move on several threads at
once, so every update takes the lock.
"""
import sys
import threading
import time

from minirun.image.listing import human_size as human


class Progress:
    def __init__(self, quiet=False, out=None):
        self.out = out or sys.stdout
        self.quiet = quiet
        self.tty = not quiet and self.out.isatty()
        self.rows = {}            # key → [status, done, total, started]
        self.drawn = 0            # rows on screen, for redrawing in place
        self.last_draw = 0.0
        self.lock = threading.Lock()

    def say(self, text):
        """A line of its own, below the layer rows, which stay as they are."""
        if self.quiet:
            return
        with self.lock:
            self._draw(force=True)
            self.drawn, self.rows = 0, {}
            self.out.write(text + "\n")
            self.out.flush()

    def update(self, key, status, done=None, total=None):
        """Layer `key` is now at `status` (Waiting, Downloading, Verifying,
        Extracting, Pull complete, Already exists, Pushing, Pushed...)."""
        if self.quiet:
            return
        with self.lock:
            row = self.rows.get(key)
            changed = row is None or row[0] != status
            if row is None:
                row = self.rows[key] = [status, 0, None, time.monotonic()]
            row[0] = status
            row[1] = done if done is not None else row[1]
            row[2] = total if total is not None else row[2]
            if self.tty:
                self._draw(force=changed)
            elif changed:
                self.out.write(f"{key}: {status}\n")
                self.out.flush()

    def _line(self, key, row):
        status, done, total, started = row
        if status not in ("Downloading", "Pushing") or not done:
            return f"{key}: {status}"
        rate = done / max(time.monotonic() - started, 1e-3)
        size = f"{human(done)}/{human(total)}" if total else human(done)
        bar = ""
        if total:
            filled = int(40 * done / total)
            bar = "[" + "=" * max(filled - 1, 0) + (">" if filled else "") + " " * (40 - filled) + "] "
        return f"{key}: {status} {bar}{size}  {human(rate)}/s"

    def _erase(self):
        if self.tty and self.drawn:
            self.out.write(f"\x1b[{self.drawn}A\x1b[J")
            self.drawn = 0

    def _draw(self, force=False):
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self.last_draw < 0.1:
            return
        self.last_draw = now
        self._erase()
        for key, row in self.rows.items():
            self.out.write("\x1b[2K" + self._line(key, row) + "\n")
        self.drawn = len(self.rows)
        self.out.flush()
