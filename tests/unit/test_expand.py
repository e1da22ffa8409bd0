"""Word expansion with Docker's rules, and the scope each instruction sees."""
import re

import pytest

from minirun.errors import DockerfileError
from minirun.image.dockerfile import parse
from minirun.image.expand import BuildScope, ExpansionError, Lexer

ENV = {"A": "x y", "EMPTY": "", "P": "/p"}


@pytest.mark.parametrize("word, expected", [
    ("$A", "x y"), ("${A}", "x y"), ("pre${P}post", "pre/ppost"), ("$UNSET", ""),
    ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${UNSET-d}", "d"),
    ("${P:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""),
    ("${P:?no}", "/p"), ("${EMPTY?no}", ""),
    ("${UNSET:-$P}", "/p"), ("${UNSET:-'$P'}", "$P"),
    ("'$A'", "$A"), ('"$A"', "x y"), ('"a\\"b"', 'a"b'), ('"a\\b"', "a\\b"), ("\\$A", "$A"),
    ("a\\ b", "a b"), ("$", "$"), ("$1", ""), ('""', ""),
])
def test_expansion_forms(word, expected):
    assert Lexer().process_word(word, ENV) == expected


def test_backtick_escape():
    assert Lexer("`").process_word("`$A and \\", ENV) == "$A and \\"


@pytest.mark.parametrize("word, message", [
    ("${UNSET:?must be set}", "UNSET: must be set"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ("'open", "matching single-quote"), ('"open', "matching double-quote"),
    ("${A", "missing '}'"), ("${}", "bad substitution"),
])
def test_expansion_errors(word, message):
    with pytest.raises(ExpansionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Lexer().process_word(word, ENV)


def test_words_split_where_docker_splits():
    assert Lexer().process_words('$A "q r" s\\ t', ENV) == ["x", "y", "q r", "s t"]
    assert Lexer().process_words("$UNSET", ENV) == []


def run_scope(text, build_args=None, image_env=("PATH=/bin",)):
    scope = BuildScope(build_args)
    out = []
    for ins in parse(text).instructions:
        if ins.keyword == "from":
            args = scope.expand(ins)
            scope.start_stage(image_env)
        else:
            args = scope.expand(ins)
        out.append((ins.keyword, args))
    return out, scope


def test_args_before_from_are_seen_only_by_from_until_redeclared():
    out, scope = run_scope("ARG IMG=busybox\nARG V=1\nFROM $IMG\nWORKDIR /$V\nARG V\nWORKDIR /$V\n")
    assert out[2] == ("from", ["busybox"])
    assert out[3] == ("workdir", ["/"])
    assert out[5] == ("workdir", ["/1"])


def test_build_args_override_defaults_only_for_declared_args():
    out, _ = run_scope("FROM x\nARG A=default\nARG UNDECLARED_USE=$B\nUSER $A\n", {"A": "given", "B": "b"})
    assert out[3] == ("user", ["given"])
    assert out[2] == ("arg", ["UNDECLARED_USE="])


def test_env_overrides_arg_and_expands_with_the_env_before_the_line():
    out, scope = run_scope('FROM x\nARG N=arg\nENV N=env\nENV A=1 B=$A\nLABEL "k $N"="$PATH"\n')
    assert out[3] == ("env", ["A", "1", "=", "B", "", "="])
    assert out[4] == ("label", ["k env", "/bin", "="])
    assert scope.env["B"] == ""


def test_run_and_cmd_are_not_expanded_copy_sources_split():
    out, _ = run_scope('FROM x\nARG F="a b"\nRUN echo $F\nCMD ["$F"]\nCOPY $F /d/\n')
    assert out[2] == ("run", ["echo $F"])
    assert out[3] == ("cmd", ["$F"])
    assert out[4] == ("copy", ["a", "b", "/d/"])


def test_onbuild_triggers_expand_when_they_run_in_the_child():
    parent = parse("FROM x\nONBUILD COPY $SRC /dst\n").instructions[1]
    assert BuildScope().expand(parent) == []            # stored raw in the parent image
    child = BuildScope()
    child.start_stage(["SRC=app"])
    assert child.expand(parent.onbuild) == ["app", "/dst"]


def test_missing_required_variable_is_a_build_error_with_the_line():
    with pytest.raises(DockerfileError, match=r"Dockerfile:3: VERSION: set it with --build-arg"):
        run_scope("FROM x\nARG VERSION\nWORKDIR /${VERSION:?set it with --build-arg}\n")


# --- pattern operators, special and positional parameters ----------------------------------
# Expected values follow POSIX sh's definitions of the operators (and
# BuildKit's treatment of parameters a Dockerfile cannot have), worked by
# hand; they were not taken from another implementation's test cases.

PATTERN_ENV = {"PLATFORM": "linux/arm64/v8", "FILE": "archive.tar.gz", "EMPTY": "",
               "STAR": "a*b", "EXT": "gz", "SPACES": "a b a b"}


@pytest.mark.parametrize("word, expected", [
    # ${VAR#pat}: the shortest prefix that matches goes; ## the longest
    ("${PLATFORM#linux/}", "arm64/v8"), ("${PLATFORM#*/}", "arm64/v8"),
    ("${PLATFORM##*/}", "v8"), ("${PLATFORM#nomatch}", "linux/arm64/v8"),
    ("${PLATFORM#}", "linux/arm64/v8"), ("${PLATFORM##*}", ""), ("${PLATFORM#*}", "linux/arm64/v8"),
    # ${VAR%pat}: the shortest suffix; %% the longest
    ("${FILE%.*}", "archive.tar"), ("${FILE%%.*}", "archive"), ("${FILE%.gz}", "archive.tar"),
    ("${FILE%%*}", ""), ("${FILE%*}", "archive.tar.gz"), ("${FILE%.zip}", "archive.tar.gz"),
    # ? is one character; [...] a class, [!...] its complement
    ("${PLATFORM%/v?}", "linux/arm64"), ("${PLATFORM%/v[0-9]}", "linux/arm64"),
    ("${FILE#[a-c]}", "rchive.tar.gz"), ("${FILE#[!a]}", "archive.tar.gz"),
    ("${FILE#[^b]}", "rchive.tar.gz"), ("${FILE##[a-z]*.}", "gz"),
    # escapes make * ? literal; in the pattern a quoted or escaped char is not a wildcard
    ("${STAR#a\\*}", "b"), ("${STAR#a?}", "b"), ("${STAR%\\*b}", "a"),
    # ${VAR/pat/repl}: the first match (the longest there); // every match
    ("${FILE/tar/zip}", "archive.zip.gz"), ("${FILE//./_}", "archive_tar_gz"),
    ("${SPACES/a/x}", "x b a b"), ("${SPACES//a/x}", "x b x b"), ("${FILE/a*./X}", "Xgz"),
    ("${FILE/nomatch/X}", "archive.tar.gz"),
    ("${UNSET/a/b}", ""), ("${UNSET#a}", ""),
    # words inside patterns and replacements expand first
    ("${FILE%.$EXT}", "archive.tar"), ("${FILE%.${UNSET:-gz}}", "archive.tar"),
    ("${FILE/$EXT/${EXT}2}", "archive.tar.gz2"), ("${FILE/${EMPTY}/X}", "Xarchive.tar.gz"),
    # positional parameters, of any number of digits, and special ones: never set
    ("$1", ""), ("${10}", ""), ("$10", ""), ("${999:-x}", "x"), ("a$12b", "ab"),
    ("$@", ""), ("$*", ""), ("$#", ""), ("$?", ""), ("$-", ""), ("$$", ""), ("$!", ""),
    ("${@}", ""), ("${*:-star}", "star"), ("${#}", ""), ("${?-q}", "q"), ("${$}", ""), ("${!}", ""),
])
def test_pattern_operators_and_parameters(word, expected):
    assert Lexer().process_word(word, PATTERN_ENV) == expected


@pytest.mark.parametrize("word, message", [
    ("${FILE/a", "missing '/'"), ("${FILE/.gz}", "missing '/'"), ("${FILE#a", "missing '}'"), ("${}", "bad substitution"),
    ("${:x}", "bad substitution"), ("${FILE:/a/b}", "unsupported modifier"),
    ("${FILE#[}", None),          # an unclosed [ is a literal: no error
])
def test_pattern_syntax_errors(word, message):
    if message is None:
        assert Lexer().process_word(word, PATTERN_ENV) == "archive.tar.gz"
        return
    with pytest.raises(ExpansionError, match=re.escape(message)):
        Lexer().process_word(word, PATTERN_ENV)


def test_which_variables_a_word_used_and_which_were_unset():
    lexer = Lexer()
    lexer.process_word("${FILE%.$EXT}-$NOPE-${ALSO:-x}-$1", PATTERN_ENV)
    assert lexer.used == {"FILE", "EXT"}
    assert lexer.unset == {"NOPE", "ALSO", "1"}
