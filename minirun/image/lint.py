"""Build checks, as BuildKit names and words them: warnings printed once,
at the end of a build, each with its rule and line.

    StageNameCasing         Stage name 'Build' should be lowercase
    FromAsCasing            'as' and 'FROM' keywords' casing do not match
    JSONArgsRecommended     JSON arguments recommended for CMD to prevent ...
    LegacyKeyValueFormat    "ENV key=value" should be used instead of legacy "ENV key value" format
    UndefinedArgInFrom      FROM argument 'VERSION' is not declared
    UndefinedVar            Usage of undefined variable '$NAME'

`# check=skip=Rule1,Rule2` (or skip=all) silences rules; `# check=error=true`
makes any warning fail the build. The static rules read the parsed
Dockerfile; the two Undefined* rules are fed by the expansion as it runs.
"""
from minirun.errors import DockerfileError
from minirun.record import Factory, Record

RULES = ("StageNameCasing", "FromAsCasing", "JSONArgsRecommended", "LegacyKeyValueFormat",
         "UndefinedArgInFrom", "UndefinedVar")


class Checks(Record):
    skip: set = Factory(set)
    error: bool = False
    found: list = Factory(list)     # (rule, message, line), in order, no repeats

    @classmethod
    def from_directive(cls, text, path):
        """`skip=JSONArgsRecommended,StageNameCasing;error=true` → Checks."""
        checks = cls()
        for part in (text or "").split(";"):
            key, eq, value = part.strip().partition("=")
            if not part.strip():
                continue
            if key == "skip" and eq:
                checks.skip |= {r.strip() for r in value.split(",") if r.strip()}
            elif key == "error" and eq and value.lower() in ("true", "false"):
                checks.error = value.lower() == "true"
            else:
                raise DockerfileError(f"# check={text}: want skip=RULE,... and/or error=true|false",
                                      path, 1)
        unknown = checks.skip - set(RULES) - {"all"}
        if unknown:
            raise DockerfileError(f"# check=skip={','.join(sorted(unknown))}: no such rule "
                                  f"(rules: {', '.join(RULES)})", path, 1)
        return checks

    def warn(self, rule, message, line):
        if "all" in self.skip or rule in self.skip:
            return
        entry = (rule, message, line)
        if entry not in self.found:
            self.found.append(entry)

    def lines(self):
        n = len(self.found)
        if not n:
            return []
        return [f"{n} warning{'s' if n > 1 else ''} found:"] + \
            [f" - {rule}: {message} (line {line})" for rule, message, line in self.found]


def static_checks(checks, instructions):
    """The rules a parsed Dockerfile shows without building it."""
    for ins in instructions:
        words = ins.original.split()
        if ins.keyword == "from" and len(ins.args) == 3:
            name = ins.args[2]
            if name != name.lower():
                checks.warn("StageNameCasing", f"Stage name '{name}' should be lowercase",
                            ins.start_line)
            keyword = words[0]
            as_word = next((w for w in words[1:] if w.lower() == "as"), "as")
            if keyword.isupper() != as_word.isupper() or keyword.islower() != as_word.islower():
                checks.warn("FromAsCasing", "'as' and 'FROM' keywords' casing do not match",
                            ins.start_line)
        elif ins.keyword in ("cmd", "entrypoint") and not ins.json_form:
            checks.warn("JSONArgsRecommended",
                        f"JSON arguments recommended for {ins.keyword.upper()} to prevent "
                        f"unintended behavior related to OS signals", ins.start_line)
        elif ins.keyword in ("env", "label") and any(sep == "" for sep in ins.args[2::3]):
            k = ins.keyword.upper()
            checks.warn("LegacyKeyValueFormat", f'"{k} key=value" should be used instead of '
                        f'legacy "{k} key value" format', ins.start_line)
