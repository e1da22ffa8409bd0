"""The Dockerfile parser: text → instruction records. It executes nothing and
expands nothing (expand.py does that, later); it agrees with Docker's own
parser (buildkit) on how lines, continuations, heredocs and arguments split.

Three passes, as in buildkit:
  1. lines:  parser directives, comments, continuations → logical lines,
             each with its first and last physical line number;
  2. split:  a logical line → keyword, leading --flags, the rest;
  3. args:   the rest → arguments, by the rule of that keyword (ARG_PARSERS);
             RUN/COPY/ADD may then consume heredoc bodies from the lines after.
"""
import json
import re

from minirun.errors import DockerfileError
from minirun.record import Factory, Record

KEYWORDS = ("from", "run", "cmd", "label", "maintainer", "expose", "env", "add", "copy",
            "entrypoint", "volume", "user", "workdir", "arg", "onbuild", "stopsignal",
            "healthcheck", "shell")
HEREDOC_KEYWORDS = ("run", "copy", "add")

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")


class Heredoc(Record):
    name: str
    fd: int = 0
    expand: bool = True     # False when any part of the delimiter was quoted
    chomp: bool = False     # <<- : leading tabs are stripped when the body is used
    content: str = ""


class Instruction(Record):
    keyword: str                       # lower-case, as written ("invalid" if unknown)
    args: list[str]
    flags: list[str] = Factory(list)
    json_form: bool = False
    start_line: int = 0
    end_line: int = 0
    original: str = ""
    heredocs: list[Heredoc] = Factory(list)
    onbuild: "Instruction | None" = None

    def record(self, nested=False):
        """The conformance corpus's record shape (buildkit-json)."""
        r = {"instruction": self.keyword, "flags": self.flags, "args": self.args,
             "json_form": self.json_form}
        if self.onbuild:
            r["onbuild"] = self.onbuild.record(nested=True)
        if not nested:
            r["start_line"], r["end_line"] = self.start_line, self.end_line
            if self.heredocs:
                r["heredocs"] = [vars(h) for h in self.heredocs]
        return r


class Dockerfile(Record):
    instructions: list[Instruction]
    escape: str = "\\"
    warnings: list[str] = Factory(list)
    directives: dict = Factory(dict)     # syntax, check: as written


class _ArgError(Exception):
    """Raised by an argument parser; becomes a DockerfileError with the line."""


# --- pass 3: arguments, one parser per keyword -------------------------------

def _split_whitespace(rest, escape):
    return _WHITESPACE.split(rest) if rest else []


def _whole(rest, escape):
    return [rest] if rest else []


def _json_array(rest):
    """The JSON (exec) form: a list of strings, or None if `rest` is no JSON array."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise _ArgError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _maybe_json(rest, escape):
    """RUN CMD ENTRYPOINT SHELL: a JSON array, or the whole rest as one string."""
    if not rest:
        return [], False
    array = _json_array(rest)
    return (array, True) if array is not None else ([rest], False)


def _maybe_json_list(rest, escape):
    """ADD COPY VOLUME: a JSON array, or words split on whitespace (quotes not honoured)."""
    array = _json_array(rest)
    return (array, True) if array is not None else (_split_whitespace(rest, escape), False)


def shell_words(rest, escape):
    """Split on whitespace outside quotes, keeping quotes and escapes in the
    words (they are removed at expansion)."""
    words, word, quote, blank_ok = [], [], None, False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if quote is None:
            if ch.isspace():
                if word or blank_ok:
                    words.append("".join(word))
                word, blank_ok = [], False
                i += 1
                continue
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == n:
                    break          # an escape at the very end is dropped
                word.append(ch)
                i += 1
                ch = rest[i]
        else:
            if ch == quote:
                quote = None
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    break
                word.append(ch)
                i += 1
                ch = rest[i]
        word.append(ch)
        i += 1
    if word or blank_ok:
        words.append("".join(word))
    return words


def _name_value(keyword):
    """ENV LABEL: `KEY=VALUE ...` pairs, or the legacy `KEY VALUE` (one pair)."""
    def parse(rest, escape):
        words = shell_words(rest, escape)
        if not words:
            return []
        if "=" not in words[0]:
            parts = _WHITESPACE.split(rest, maxsplit=1)
            if len(parts) < 2:
                raise _ArgError(f"{keyword.upper()} must have two arguments")
            return [parts[0], parts[1], ""]
        args = []
        for word in words:
            if "=" not in word:
                raise _ArgError(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
            key, value = word.split("=", 1)
            args += [key, value, "="]
        return args
    return parse


def _healthcheck(rest, escape):
    """HEALTHCHECK: a type word (CMD, NONE) then a command as for CMD."""
    parts = rest.split(None, 1)
    if not parts or rest[0].isspace():
        return [], False
    command, json_form = _maybe_json(parts[1] if len(parts) > 1 else "", escape)
    return [parts[0]] + command, json_form


def _ignore(rest, escape):
    return [""]


def _plain(parser):
    return lambda rest, escape: (parser(rest, escape), False)


ARG_PARSERS = {
    "add": _maybe_json_list, "copy": _maybe_json_list, "volume": _maybe_json_list,
    "run": _maybe_json, "cmd": _maybe_json, "entrypoint": _maybe_json, "shell": _maybe_json,
    "from": _plain(_split_whitespace), "expose": _plain(_split_whitespace),
    "user": _plain(_whole), "workdir": _plain(_whole), "stopsignal": _plain(_whole),
    "maintainer": _plain(_whole),
    "env": _plain(_name_value("env")), "label": _plain(_name_value("label")),
    "arg": _plain(shell_words),
    "healthcheck": _healthcheck,
}


# --- pass 2: keyword and flags ------------------------------------------------

def _extract_flags(line):
    """Leading `--name[=value]` words → (flags, rest). Quotes inside a flag are
    removed and a backslash escapes the next character; a bare `--` ends them."""
    flags = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if not line.startswith("--", i):
            return flags, line[i:]
        word, quote = [], None
        while i < n and (quote or not line[i].isspace()):
            ch = line[i]
            if quote is None and ch in "'\"":
                quote = ch
            elif ch == quote:
                quote = None
            elif ch == "\\" and i + 1 < n:
                i += 1
                word.append(line[i])
            elif ch != "\\":
                word.append(ch)
            i += 1
        if "".join(word) == "--":
            return flags, line[i:]
        flags.append("".join(word))


def parse_instruction(line, escape="\\", lineno=None, path="Dockerfile"):
    """One logical line → an Instruction (no line numbers or heredocs yet)."""
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword = parts[0].lower()
    flags, rest = _extract_flags(parts[1]) if len(parts) > 1 else ([], "")
    rest = rest.strip()
    if keyword == "onbuild":
        child = parse_instruction(rest, escape, lineno, path) if rest else None
        return Instruction(keyword, [], flags, False, original=line, onbuild=child)
    parser = ARG_PARSERS.get(keyword, _plain(_ignore))
    try:
        args, json_form = parser(rest, escape)
    except _ArgError as e:
        raise DockerfileError(str(e), path, lineno) from None
    return Instruction(keyword, args, flags, json_form, original=line)


def instruction_flags(ins, allowed, path="Dockerfile", line=None, repeatable=()):
    """An instruction's `--name=value` flags as a dict, each checked
    against the names its keyword allows; a `repeatable` one gives a list."""
    flags = {name: [] for name in repeatable}
    for flag in ins.flags:
        name, _, value = flag[2:].partition("=")
        if name not in allowed:
            raise DockerfileError(f"unknown flag: --{name} for {ins.keyword.upper()}", path,
                                  line or ins.start_line)
        if name in repeatable:
            flags[name].append(value)
        else:
            flags[name] = value
    return flags


def flag_is_set(flags, name):
    """A boolean flag: `--link` and `--link=true` are set, `--link=false` is not."""
    return name in flags and flags[name].lower() not in ("false", "0")


# --- heredocs -----------------------------------------------------------------

def _heredoc_words(line, escape):
    """Words of `line` as the heredoc scan sees them: quotes and escapes kept,
    and `<<` glued to the delimiter that follows it (`<<  EOF` is `<<EOF`)."""
    words = []
    for word in shell_words(line, escape):
        if words and re.fullmatch(r"\d*<<-?", words[-1]):
            words[-1] += word
        else:
            words.append(word)
    return words


def _unquote(word, escape):
    """Remove quotes and escapes; also say whether a quote was used."""
    out, quote, quoted, i = [], None, False, 0
    while i < len(word):
        ch = word[i]
        if quote is None and ch in "'\"":
            quote, quoted = ch, True
        elif ch == quote:
            quote = None
        elif ch == escape and quote != "'" and i + 1 < len(word):
            i += 1
            out.append(word[i])
        else:
            out.append(ch)
        i += 1
    return "".join(out), quoted


def heredocs_in(line, escape):
    """The heredocs a line opens, in order: `<<EOF`, `<<-EOF`, `3<<'EOF'`..."""
    docs = []
    for word in _heredoc_words(line, escape):
        m = _HEREDOC_WORD.match(word)
        if not m or not m.group(3).strip():
            continue
        name, quoted = _unquote(m.group(3).strip(), escape)
        docs.append(Heredoc(name=name, fd=int(m.group(1) or 0), expand=not quoted,
                            chomp=m.group(2) == "-"))
    return docs


def _can_have_heredocs(ins):
    target = ins.onbuild if ins.keyword == "onbuild" and ins.onbuild else ins
    return target.keyword in HEREDOC_KEYWORDS and not target.json_form


# --- pass 1: lines --------------------------------------------------------------

def _is_comment(line):
    return line.lstrip().startswith("#")


def _continues(line, escape):
    """Does `line` end with the escape character (not itself escaped)? Returns
    (line without it, True) or (line, False)."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape) and not stripped.endswith(escape * 2):
        return stripped[:-1], True
    return line, False


def parse(text, path="Dockerfile"):
    """Parse Dockerfile `text`; raises DockerfileError naming `path` and the line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    escape = "\\"
    seen_directives, directives = set(), {}
    looking_for_directives = True
    instructions, warnings = [], []
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        if looking_for_directives:
            m = _DIRECTIVE.match(raw.strip())
            if m and m.group(1).lower() in _KNOWN_DIRECTIVES:
                key = m.group(1).lower()
                if key in seen_directives:
                    raise DockerfileError(f"only one {key} parser directive can be used", path, i)
                seen_directives.add(key)
                directives[key] = m.group(2)
                if key == "escape":
                    if m.group(2) not in ("\\", "`"):
                        raise DockerfileError(f"invalid escape token '{m.group(2)}' does not match ` or \\",
                                              path, i)
                    escape = m.group(2)
                continue
            looking_for_directives = False
        start = i
        line = raw.lstrip()
        if _is_comment(line):
            continue
        line, more = _continues(line, escape)
        if not more and not line.strip():
            continue
        empty_continuation = False
        while more and i < len(lines):
            raw = lines[i]
            i += 1
            if _is_comment(raw):
                continue
            if not raw.strip():
                empty_continuation = True
                continue
            piece, more = _continues(raw, escape)
            line += piece
        if empty_continuation:
            warnings.append(f"{path}:{start}: empty continuation line")
        ins = parse_instruction(line, escape, start, path)
        ins.start_line = start
        if "<<" in line and _can_have_heredocs(ins):
            ins.heredocs = heredocs_in(line, escape)
            for doc in ins.heredocs:
                body = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError(f"unterminated heredoc {doc.name}", path, start)
                    candidate = lines[i]
                    i += 1
                    if (candidate.lstrip("\t") if doc.chomp else candidate) == doc.name:
                        break
                    body.append(candidate + "\n")
                doc.content = "".join(body)
        ins.end_line = i
        instructions.append(ins)
    if not instructions:
        raise DockerfileError("file with no instructions", path, len(lines) or None)
    return Dockerfile(instructions, escape, warnings, directives)


def parse_file(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        raise DockerfileError(f"cannot read: {e.strerror}", path)
    bad = next((i for i, c in enumerate(text) if "\udc80" <= c <= "\udcff"), None)
    if bad is not None:
        raise DockerfileError("not a text file: invalid UTF-8 here (a binary file?)", path,
                              text.count("\n", 0, bad) + 1)
    return parse(text, path)
