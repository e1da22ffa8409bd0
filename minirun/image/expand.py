"""Word expansion: the step after parsing, with Docker's rules.

    $VAR ${VAR}                  the value, or "" when unset
    ${VAR:-word} ${VAR-word}     word when VAR is unset (or, with ':', empty)
    ${VAR:+word} ${VAR+word}     word when VAR is set (and, with ':', not empty)
    ${VAR:?msg}  ${VAR?msg}      an error "VAR: msg" when unset (or empty)
    'single'                     literal
    "double"                     $ expands; the escape char escapes only " $ and itself
    \\x (the active escape)      x, literally

Expansion never runs anything: there is no $(...) and no globbing. Which
instructions expand, and in which scope, is BuildScope's business below.
"""
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

    def process_word(self, word, env):
        """One word in, one string out: quotes removed, variables expanded."""
        return self._process(word, env, split=False)[0]

    def process_words(self, word, env):
        """As the shell would split it: unquoted whitespace, also from values."""
        return self._process(word, env, split=True)

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

    def _name(self):
        t, start = self.text, self.pos
        if self.pos < len(t) and t[self.pos].isdigit():
            self.pos += 1          # $1: positional, a single digit
            return t[start:self.pos]
        while self.pos < len(t) and (t[self.pos].isalnum() or t[self.pos] == "_"):
            self.pos += 1
        return t[start:self.pos]

    def _dollar(self):
        t = self.text
        if self.pos < len(t) and t[self.pos] == "{":
            self.pos += 1
            return self._braced()
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _braced(self):
        t = self.text
        name = self._name()
        if not name:
            raise ExpansionError(f"bad substitution: ${{{t[self.pos:self.pos + 1]}")
        if self.pos >= len(t):
            raise ExpansionError(f"missing '}}' in ${{{name}")
        ch = t[self.pos]
        self.pos += 1
        value = self.env.get(name)
        if ch == "}":
            return value or ""
        colon = ch == ":"
        if colon:
            if self.pos >= len(t):
                raise ExpansionError(f"missing '}}' in ${{{name}:")
            ch = t[self.pos]
            self.pos += 1
        if ch not in "-+?":
            raise ExpansionError(f"unsupported modifier ({ch}) in substitution ${{{name}...}}")
        word = self._nested_word()
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set else word
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            reason = word or ("is not allowed to be empty" if colon and value == "" else
                              "is not allowed to be unset")
            raise ExpansionError(f"{name}: {reason}")
        return value

    def _nested_word(self):
        """The word inside ${VAR:-word}: itself expanded, up to the closing brace."""
        words = _Words()
        self._scan(words, split=False, stop="}")
        if self.pos >= len(self.text):
            raise ExpansionError("missing '}' in substitution")
        self.pos += 1
        words.end()
        return "".join(words.words)


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

    def __init__(self, build_args=None, escape="\\", path="Dockerfile"):
        self.lexer = Lexer(escape)
        self.build_args = dict(build_args or {})
        self.global_args = {}
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
        self.env = dict(e.split("=", 1) if "=" in e else (e, "") for e in image_env)

    def expand(self, ins):
        """The instruction's arguments after expansion, and the scope updated
        by it (ARG and ENV). Raises DockerfileError with the line."""
        expander = EXPANDERS.get(ins.keyword)
        try:
            if ins.keyword == "from":
                args = _each(self.lexer, ins.args, self.global_args)
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
        return args

    def _declare_args(self, words):
        declared = []
        for word in words:
            name, eq, default = word.partition("=")
            name = self.lexer.process_word(name, {})
            scope = self.global_args if self.stage_args is None else self.stage_args
            if name in self.build_args:
                value = self.build_args[name]
            elif eq:
                value = self.lexer.process_word(default, self.variables())
            elif self.stage_args is not None and name in self.global_args:
                value = self.global_args[name]
            else:
                value = None       # declared, no value: stays unset
            if value is not None:
                scope[name] = value
            declared.append(f"{name}={value}" if value is not None else name)
        return declared
