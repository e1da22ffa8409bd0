"""The Dockerfile parser, on its own: text in, records out, nothing executed."""
import pytest

from minirun.errors import DockerfileError
from minirun.image.dockerfile import parse


def records(text):
    return [(i.keyword, i.flags, i.args, i.json_form) for i in parse(text).instructions]


def test_keywords_are_case_insensitive_and_forms_are_told_apart():
    assert records('from busybox\nRun ["echo", "hi"]\nrun echo hi\n') == [
        ("from", [], ["busybox"], False),
        ("run", [], ["echo", "hi"], True),
        ("run", [], ["echo hi"], False)]


def test_invalid_json_falls_back_to_shell_form():
    assert records("CMD ['a']\n")[0][2:] == (["['a']"], False)
    assert records('CMD ["a", "b"\n')[0][2:] == (['["a", "b"'], False)


def test_json_array_of_non_strings_is_an_error():
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: .*strings only"):
        parse('FROM x\nCMD ["a", 1]\n')


def test_continuations_comments_and_blank_lines():
    df = parse("FROM x\nRUN a \\\n# comment\n\n    b \\\n  c\nENV A=1\n")
    run = df.instructions[1]
    assert run.args == ["a     b   c"]
    assert (run.start_line, run.end_line) == (2, 6)
    assert df.warnings  # the blank line inside the continuation


def test_escape_directive_and_escaped_escape_at_line_end():
    df = parse("# escape=`\nFROM x\nRUN a `\n  b\nENV P C:\\\\dir\\\\\n")
    assert df.escape == "`"
    assert [i.args for i in df.instructions[1:]] == [["a   b"], ["P", "C:\\\\dir\\\\", ""]]
    assert parse("FROM x\nENV A b\\\\\nENV B c\n").instructions[1].args == ["A", "b\\\\", ""]


def test_syntax_directive_is_accepted_and_duplicates_rejected():
    assert parse("# syntax=docker/dockerfile:1\nFROM x\n").instructions[0].args == ["x"]
    with pytest.raises(DockerfileError, match="only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM x\n")


def test_flags():
    assert records("COPY --from=build --chown=1:2 --chmod=755 --link a b\n")[0][1] == [
        "--from=build", "--chown=1:2", "--chmod=755", "--link"]
    assert records('RUN --mount=type=cache,target="/a b" -- ls\n')[0][1:3] == (
        ["--mount=type=cache,target=/a b"], ["ls"])


def test_env_label_arg_forms():
    assert records('ENV A=1 B="two words"\n')[0][2] == ["A", "1", "=", "B", '"two words"', "="]
    assert records("ENV A two words\n")[0][2] == ["A", "two words", ""]
    assert records('ARG a="1 2" b\n')[0][2] == ['a="1 2"', "b"]
    with pytest.raises(DockerfileError, match="ENV must have two arguments"):
        parse("ENV PATH\n")
    with pytest.raises(DockerfileError, match="can't find ="):
        parse("LABEL a=1 b\n")


def test_onbuild_and_healthcheck():
    ob = parse("ONBUILD RUN echo hi\n").instructions[0]
    assert (ob.keyword, ob.args, ob.onbuild.keyword, ob.onbuild.args) == ("onbuild", [], "run", ["echo hi"])
    assert records("HEALTHCHECK --interval=5s CMD curl -f x\n")[0][1:3] == (
        ["--interval=5s"], ["CMD", "curl -f x"])
    assert records("HEALTHCHECK NONE\n")[0][2] == ["NONE"]


def test_heredocs():
    df = parse("FROM x\nRUN <<EOF\necho $A\nEOF\n"
               "COPY <<-'A' 3<<B /dst\n\tone\n\tA\ntwo\nB\nRUN [\"<<EOF\"]\n")
    run, copy, exec_form = df.instructions[1:]
    assert (run.heredocs[0].name, run.heredocs[0].content, run.heredocs[0].expand) == ("EOF", "echo $A\n", True)
    a, b = copy.heredocs
    assert (a.name, a.chomp, a.expand, a.content) == ("A", True, False, "\tone\n")
    assert (b.name, b.fd, b.content) == ("B", 3, "two\n")
    assert (copy.start_line, copy.end_line) == (5, 9)
    assert exec_form.heredocs == []
    with pytest.raises(DockerfileError, match="Dockerfile:2: unterminated heredoc EOF"):
        parse("FROM x\nRUN <<EOF\nno end\n")


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n# comments\n"])
def test_no_instructions_is_an_error(text):
    with pytest.raises(DockerfileError, match="file with no instructions"):
        parse(text)


def test_continuation_at_end_of_file_and_bom():
    assert records("\ufeffFROM x\nRUN a \\") == [("from", [], ["x"], False), ("run", [], ["a"], False)]
