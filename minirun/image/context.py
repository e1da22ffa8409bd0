"""The build context: the directory `minirun build` is given, as COPY and ADD
may see it — minus what .dockerignore excludes, and never anything outside.

.dockerignore follows Docker's rules: one pattern a line, `#` comments, paths
relative to the context (a leading `/` is dropped), `*` and `?` within one
path element, `**` across any number of them, `!` re-includes, the last
matching line wins, and a pattern that matches a directory matches what it
contains.
"""
import hashlib
import os
import re
import stat

from minirun.errors import DockerfileError

GLOB_CHARS = set("*?[")


def _pattern_regex(pattern):
    """A .dockerignore or COPY pattern → an anchored regex over '/'-paths."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):          # **/ : zero or more directories
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def _clean(path):
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class Ignore:
    """The .dockerignore of a context: excluded(path) for '/'-separated paths."""

    def __init__(self, lines=()):
        self.rules = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = _clean(line[1:].strip() if negate else line)
            if pattern:
                self.rules.append((negate, _pattern_regex(pattern)))

    @classmethod
    def of_context(cls, context):
        try:
            with open(os.path.join(context, ".dockerignore")) as f:
                return cls(f.read().splitlines())
        except FileNotFoundError:
            return cls()

    def excluded(self, path):
        """Last matching rule wins; a rule matching a parent directory counts."""
        parents = []
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            parents.append("/".join(parts[:i]))
        result = False
        for negate, regex in self.rules:
            if any(regex.match(p) for p in parents):
                result = not negate
        return result


class Checksums:
    """The sha256 of each context file, remembered between builds by what
    stat(2) says of it (size, mtime, ctime, inode, mode), as BuildKit's
    content hash cache does: a rebuild reads only the files that changed.
    ctime counts too, so a file rewritten with its old mtime put back is
    still read again. Kept in <store>/checksums/<hash of the context path>.json."""

    def __init__(self, store_root, context_root):
        key = hashlib.sha256(context_root.encode()).hexdigest()[:32]
        self.path = os.path.join(store_root, "checksums", key + ".json") if store_root else None
        self.known, self.changed = {}, False
        if self.path:
            try:
                import json
                with open(self.path) as f:
                    self.known = json.load(f)
                if not isinstance(self.known, dict):
                    self.known = {}
            except (OSError, ValueError):
                self.known = {}

    @staticmethod
    def _stamp(st):
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode]

    def _known(self, rel, st):
        entry = self.known.get(rel)
        if isinstance(entry, list) and entry[:-1] == self._stamp(st):
            return bytes.fromhex(entry[-1])
        return None

    def digest(self, rel, path, st):
        digest = self._known(rel, st)
        if digest is None:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").digest()
            self.learn(rel, st, digest)
        return digest

    def learn(self, rel, st, digest):
        self.known[rel] = self._stamp(st) + [digest.hex()]
        self.changed = True

    def hash_along(self, pending, root):
        """Of the files a COPY is about to copy (layers.Pending), those of
        the context whose digest is not known get a hash the copy feeds as
        it reads their bytes; learn_along() keeps the digests."""
        fed = []
        for p in pending:
            rel = os.path.relpath(p.source, root)
            if not rel.startswith("..") and self._known(rel, p.st) is None:
                p.content = hashlib.sha256()
                fed.append((rel, p))
        return fed

    def learn_along(self, fed):
        for rel, p in fed:
            self.learn(rel, p.st, p.content.digest())
        self.save()

    def save(self):
        if self.path and self.changed:
            import json
            from minirun.linux.files import write_atomic
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            write_atomic(self.path, json.dumps(self.known))
            self.changed = False


class Context:
    def __init__(self, root, store_root=None):
        self.root = os.path.realpath(root)
        self.ignore = Ignore.of_context(self.root)
        self._walks = {}
        self.checksums = Checksums(store_root, self.root)

    def _inside(self, rel, what, path, line):
        """rel, its symlinks followed, still inside the context and not
        excluded by .dockerignore — or an error. A symlink may not lead out
        of the context, nor to a file .dockerignore keeps out of the build."""
        real = os.path.realpath(os.path.join(self.root, rel))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise DockerfileError(f"{what} failed: forbidden path outside the build context: "
                                  f"{rel} (it leads to {real})", path, line)
        resolved = os.path.relpath(real, self.root) if real != self.root else ""
        if resolved != rel and resolved and self.ignore.excluded(resolved):
            raise DockerfileError(f"{what} failed: {rel} leads to {resolved}, which .dockerignore "
                                  f"excludes from the build context", path, line)
        return resolved

    def sources(self, patterns, what, path, line):
        """COPY/ADD sources → [context-relative paths] ('' is the context
        itself), globs expanded, ignored files left out, escapes refused."""
        found = []
        for pattern in patterns:
            cleaned = _clean(pattern)
            if cleaned == ".." or cleaned.startswith("../"):
                raise DockerfileError(f"{what} failed: forbidden path outside the build context: "
                                      f"{pattern}", path, line)
            if GLOB_CHARS & set(cleaned):
                regex = _pattern_regex(cleaned)
                matches = [p for p in self.walk() if regex.match(p)]
                if not matches:
                    raise DockerfileError(f"{what} failed: no source files were specified "
                                          f"matching {pattern!r}", path, line)
                found += [self._inside(p, what, path, line) for p in matches]
                continue
            if cleaned and (self.ignore.excluded(cleaned)
                            or not os.path.lexists(os.path.join(self.root, cleaned))):
                raise DockerfileError(f"{what} failed: file not found in build context or "
                                      f"excluded by .dockerignore: {pattern}", path, line)
            found.append(self._inside(cleaned, what, path, line))
        return found

    def walk(self, top=""):
        """Every path under `top` that .dockerignore lets through, sorted.
        Remembered: the cache key and the copy both walk what COPY copies."""
        if top not in self._walks:
            self._walks[top] = self._walk(top)
        return self._walks[top]

    def _walk(self, top):
        out = []
        base = os.path.join(self.root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in dirnames + filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if not self.ignore.excluded(rel):
                    out.append(rel)
        return sorted(out)

    def content_digest(self, rels, walk=None):
        """What COPY copies, by content: names, modes, link targets, bytes —
        not mtimes, so a file touched but unchanged keeps the cache. `walk`:
        what is copied under a directory (default: self.walk)."""
        walk = walk or self.walk
        h = hashlib.sha256()
        for rel in rels:
            for sub in [rel] + (walk(rel) if os.path.isdir(os.path.join(self.root, rel))
                                else []):
                p = os.path.join(self.root, sub)
                st = os.stat(p) if sub == rel else os.lstat(p)
                h.update(f"{sub}\0{stat.S_IMODE(st.st_mode)}\0{stat.S_IFMT(st.st_mode)}\0".encode())
                if stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(p).encode())
                elif stat.S_ISREG(st.st_mode):
                    h.update(self.checksums.digest(sub, p, st))
        self.checksums.save()
        return h.hexdigest()
