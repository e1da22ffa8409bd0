"""Word expansion: the step after parsing, with Docker's rules (BuildKit's
shell lexer).

    $VAR ${VAR}                  the value, or "" when unset
    ${VAR:-word} ${VAR-word}     word when VAR is unset (or, with ':', empty)
    ${VAR:+word} ${VAR+word}     word when VAR is set (and, with ':', not empty)
    ${VAR:?msg}  ${VAR?msg}      an error "VAR: msg" when unset (or empty)
    ${VAR#pat}   ${VAR##pat}     VAR without its shortest / longest prefix matching pat
    ${VAR%pat}   ${VAR%%pat}     VAR without its shortest / longest suffix matching pat
    ${VAR/pat/r} ${VAR//pat/r}   the first / every match of pat replaced by r
    $1 ${10} $@ $* $# $? $- $$ $!    positional and special parameters: a
                                 Dockerfile has none, so they are empty
    'single'                     literal
    "double"                     $ expands; the escape char escapes only " $ and itself
    \\x (the active escape)      x, literally

A pattern is a shell glob: * any string, ? one character, [abc] [a-z] [!x]
a class, \\* \\? \\[ a literal character; words inside patterns and
replacements expand first. Expansion never runs anything: there is no
$(...) and no globbing of file names. Each expansion notes which variables
it read and which were unset (BuildKit's ProcessWordWithMatches), for the
build's warnings. Which instructions expand, and in which scope, is
BuildScope's business below.
"""
import re

from minirun.errors import DockerfileError


class ExpansionError(Exception):
    pass


class _Words:
    """Collects characters into words, splitting on unquoted whitespace."""

    def __init__(self):
        self.words, self.current, self.started = [], [], False

    def add(self, text, split):
        for ch in text:
            if split and ch.isspace():
                self.end()
            else:
                self.current.append(ch)
                self.started = True

    def mark(self):
        self.started = True     # "" is still a word

    def end(self):
        if self.started:
            self.words.append("".join(self.current))
        self.current, self.started = [], False


class Lexer:
    def __init__(self, escape="\\"):
        self.escape = escape
        self.raw_escapes = False
        self.used, self.unset = set(), set()

    def process_word(self, word, env):
        """One word in, one string out: quotes removed, variables expanded."""
        return self._process(word, env, split=False)[0]

    def process_words(self, word, env):
        """As the shell would split it: unquoted whitespace, also from values."""
        return self._process(word, env, split=True)

    def forget(self):
        """Start noting used and unset variables afresh (they accumulate
        over the words of one instruction)."""
        self.used, self.unset = set(), set()

    def _process(self, text, env, split, stop=None):
        self.text, self.pos, self.env = text, 0, env
        words = _Words()
        self._scan(words, split, stop)
        words.end()
        return words.words if split else (words.words or [""])

    def _scan(self, words, split, stop=None):
        t = self.text
        while self.pos < len(t):
            ch = t[self.pos]
            if stop is not None and ch == stop:
                return
            self.pos += 1
            if ch == self.escape:
                if self.pos < len(t):
                    if self.raw_escapes:
                        words.add("\\", split=False)
                    words.add(t[self.pos], split=False)
                    self.pos += 1
            elif ch == "'":
                words.mark()
                words.add(self._single_quoted(), split=False)
            elif ch == '"':
                words.mark()
                words.add(self._double_quoted(), split=False)
            elif ch == "$":
                words.add(self._dollar(), split=split)
            else:
                words.add(ch, split=split)

    def _single_quoted(self):
        end = self.text.find("'", self.pos)
        if end < 0:
            raise ExpansionError("unexpected end of statement while looking for matching single-quote")
        value, self.pos = self.text[self.pos:end], end + 1
        return value

    def _double_quoted(self):
        out, t = [], self.text
        while self.pos < len(t):
            ch = t[self.pos]
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == self.escape and self.pos < len(t) and t[self.pos] in ('"', "$", self.escape):
                out.append(t[self.pos])
                self.pos += 1
            else:
                out.append(ch)
        raise ExpansionError("unexpected end of statement while looking for matching double-quote")

    SPECIAL = "@*#?-$!"

    def _name(self):
        """A variable's name: letters, digits and _; or all the digits of a
        positional parameter; or one special parameter's character."""
        t, start = self.text, self.pos
        if self.pos < len(t) and t[self.pos].isdigit():
            while self.pos < len(t) and t[self.pos].isdigit():
                self.pos += 1
            return t[start:self.pos]
        if self.pos < len(t) and t[self.pos] in self.SPECIAL:
            self.pos += 1
            return t[start:self.pos]
        while self.pos < len(t) and (t[self.pos].isalnum() or t[self.pos] == "_"):
            self.pos += 1
        return t[start:self.pos]

    def _get(self, name):
        """The variable's value or None, noting it as used or unset."""
        value = self.env.get(name)
        (self.used if value is not None else self.unset).add(name)
        return value

    def _dollar(self):
        t = self.text
        if self.pos < len(t) and t[self.pos] == "{":
            self.pos += 1
            return self._braced()
        name = self._name()
        if not name:
            return "$"
        return self._get(name) or ""

    def _braced(self):
        t = self.text
        if self.pos >= len(t):
            raise ExpansionError("syntax error: missing '}'")
        if t[self.pos] in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self._name()
        if self.pos >= len(t):
            raise ExpansionError(f"missing '}}' in ${{{name}")
        op = t[self.pos]
        self.pos += 1
        if op == "}":
            return self._get(name) or ""
        if op == "/":
            return self._replace(name)
        colon = op == ":"
        if colon:
            if self.pos >= len(t):
                raise ExpansionError(f"missing '}}' in ${{{name}:")
            op = t[self.pos]
            self.pos += 1
        if op in "#%":
            longest = self.pos < len(t) and t[self.pos] == op
            self.pos += longest
            pattern = self._nested_word(raw_escapes=True)
            value = self._get(name) or ""
            return trim(value, glob_regex(pattern), suffix=op == "%", longest=longest)
        if op not in "-+?":
            raise ExpansionError(f"unsupported modifier ({':' if colon else ''}{op}) in "
                                 f"substitution ${{{name}...}}")
        word = self._nested_word()
        value = self._get(name)
        is_set = value is not None and (value != "" or not colon)
        if op == "-":
            return value if is_set else word
        if op == "+":
            return word if is_set else ""
        if not is_set:
            reason = word or ("is not allowed to be empty" if colon and value == "" else
                              "is not allowed to be unset")
            raise ExpansionError(f"{name}: {reason}")
        return value

    def _replace(self, name):
        """${VAR/pat/repl} and ${VAR//pat/repl}."""
        every = self.pos < len(self.text) and self.text[self.pos] == "/"
        self.pos += every
        pattern = self._nested_word(raw_escapes=True, stop="/")
        replacement = self._nested_word()
        value = self._get(name) or ""
        return replace(value, glob_regex(pattern), replacement, every)

    def _nested_word(self, raw_escapes=False, stop="}"):
        """The word inside ${VAR:-word}, up to `stop`: itself expanded. In a
        pattern (raw_escapes) an escape stays, for glob_regex to read."""
        words = _Words()
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            self._scan(words, split=False, stop=stop)
        finally:
            self.raw_escapes = saved
        if self.pos >= len(self.text):
            raise ExpansionError(f"syntax error: missing '{stop}'" if stop == "}" else
                                 "syntax error: missing '/' in ${}")
        self.pos += 1
        words.end()
        return "".join(words.words)


def glob_regex(pattern):
    """A shell glob as a compiled regex: * ? [...] and \\-escapes."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern):
                out.append(re.escape(pattern[i]))
                i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1 if pattern[i:i + 1] in ("!", "^") else i)
            end = pattern.find("]", end + 1) if end == i else end      # []...] : ] is literal
            if end < 0:
                out.append(re.escape("["))
                continue
            body = pattern[i:end]
            i = end + 1
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(re.escape(ch))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as e:
        raise ExpansionError(f"invalid pattern ({pattern}) in substitution: {e}") from None


def trim(value, regex, suffix, longest):
    """VAR without the shortest (or longest) prefix or suffix `regex` matches whole."""
    cuts = range(len(value) + 1)
    if longest != suffix:           # longest prefix, shortest suffix: try from the far end
        cuts = reversed(cuts)
    for cut in cuts:
        if regex.fullmatch(value[cut:] if suffix else value[:cut]):
            return value[:cut] if suffix else value[cut:]
    return value


def replace(value, regex, replacement, every):
    """The leftmost match of `regex` (the longest there) replaced; with
    `every`, each match in turn, left to right."""
    out, i = [], 0
    while i <= len(value):
        end = next((e for e in range(len(value), i - 1, -1) if regex.fullmatch(value, i, e)), None)
        if end is None:
            if i < len(value):
                out.append(value[i])
            i += 1
            continue
        out.append(replacement)
        if end == i:                # an empty match: keep the character, move on
            if i < len(value):
                out.append(value[i])
            end += 1
        i = end
        if not every:
            out.append(value[i:])
            break
    return "".join(out)


# --- which instructions expand, and with what ---------------------------------

def _each(lexer, args, env):
    return [lexer.process_word(a, env) for a in args]


def _sources_and_dest(lexer, args, env):
    """COPY/ADD: every word may expand into several (ARG FILES="a b" → two sources)."""
    out = []
    for a in args:
        out += lexer.process_words(a, env)
    return out


def _key_values(lexer, args, env):
    """ENV/LABEL triples (key, value, separator): keys and values expand."""
    out = []
    for i in range(0, len(args), 3):
        out += [lexer.process_word(args[i], env), lexer.process_word(args[i + 1], env), args[i + 2]]
    return out


EXPANDERS = {
    "add": _sources_and_dest, "copy": _sources_and_dest,
    "env": _key_values, "label": _key_values,
    "expose": _each, "from": _each, "stopsignal": _each, "user": _each,
    "volume": _each, "workdir": _each, "arg": _each,
}
"""RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK are left for the shell in the
container. ONBUILD is stored raw; its trigger (ins.onbuild) expands by its
own keyword's rule when a child build runs it."""


class BuildScope:
    """The variables visible at each instruction of a build.

    ARGs before the first FROM are global: visible only in FROM lines, and
    inside a stage only once re-declared by `ARG NAME`. Inside a stage the
    environment is the base image's Env, the stage's ARGs and its ENVs (an
    ENV overrides an ARG of the same name). --build-arg values override ARG
    defaults, and only for ARGs that are declared.
    """

    def __init__(self, build_args=None, escape="\\", path="Dockerfile", predefined=None):
        self.lexer = Lexer(escape)
        self.build_args = dict(build_args or {})
        self.predefined = dict(predefined or {})     # TARGETPLATFORM and friends
        self.global_args = {}
        self.declared = set()        # ARG and ENV names of the current scope, set or not
        self.declared_globals = set()
        self.stage_args = None     # None until the first FROM
        self.env = {}
        self.path = path

    def variables(self):
        if self.stage_args is None:
            return dict(self.global_args)
        return {**self.stage_args, **self.env}

    def start_stage(self, image_env=()):
        """FROM: a new stage starts with the base image's environment."""
        self.stage_args = {}
        self.declared = set()
        self.env = dict(e.split("=", 1) if "=" in e else (e, "") for e in image_env)

    def expand(self, ins):
        """The instruction's arguments after expansion, and the scope updated
        by it (ARG and ENV). Raises DockerfileError with the line."""
        expander = EXPANDERS.get(ins.keyword)
        self.lexer.forget()
        try:
            if ins.keyword == "from":
                args = _each(self.lexer, ins.args, {**self.predefined, **self.global_args})
            elif expander is None or ins.json_form and ins.keyword in ("run", "cmd", "entrypoint"):
                args = list(ins.args)
            elif ins.keyword == "arg":
                args = self._declare_args(ins.args)
            else:
                args = expander(self.lexer, ins.args, self.variables())
        except ExpansionError as e:
            raise DockerfileError(str(e), self.path, ins.start_line) from None
        if ins.keyword == "env":
            for i in range(0, len(args), 3):
                self.env[args[i]] = args[i + 1]
                self.declared.add(args[i])
        return args

    def undefined(self, ins):
        """The variables the last expand() read that nothing declares (for
        the build's UndefinedVar and UndefinedArgInFrom warnings); the
        shell's own parameters ($1, $@...) never count."""
        declared = self.declared_globals | set(self.predefined) if ins.keyword == "from" \
            else self.declared | set(self.env)
        return sorted(n for n in self.lexer.unset - declared
                      if not n.isdigit() and n not in Lexer.SPECIAL)

    def expand_value(self, ins, line):
        """A function expanding one flag value in the current scope (RUN --mount)."""
        def expand(word):
            try:
                return self.lexer.process_word(word, self.variables())
            except ExpansionError as e:
                raise DockerfileError(str(e), self.path, line) from None
        return expand

    def expand_word(self, word, ins):
        """One word of a FROM line (its --platform flag): the global scope."""
        try:
            return self.lexer.process_word(word, {**self.predefined, **self.global_args})
        except ExpansionError as e:
            raise DockerfileError(str(e), self.path, ins.start_line) from None

    def _declare_args(self, words):
        declared = []
        for word in words:
            name, eq, default = word.partition("=")
            name = self.lexer.process_word(name, {})
            scope = self.global_args if self.stage_args is None else self.stage_args
            (self.declared_globals if self.stage_args is None else self.declared).add(name)
            if name in self.build_args:
                value = self.build_args[name]
            elif eq:
                value = self.lexer.process_word(default, self.variables())
            elif self.stage_args is not None and name in self.global_args:
                value = self.global_args[name]
            elif name in self.predefined:
                value = self.predefined[name]
            else:
                value = None       # declared, no value: stays unset
            if value is not None:
                scope[name] = value
            declared.append(f"{name}={value}" if value is not None else name)
        return declared
