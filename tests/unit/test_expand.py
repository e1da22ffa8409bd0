"""Word expansion with Docker's rules, and the scope each instruction sees."""
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
    ("${A", "missing '}'"), ("${A/x/y}", "unsupported modifier (/)"), ("${}", "bad substitution"),
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
