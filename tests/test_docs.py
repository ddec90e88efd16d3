"""The documentation stays true: every ``dataigm ...`` command line in a fenced shell block (```bash) of
README.md and docs/*.md names a command (and subcommand) and options the real parser has; links between
markdown files reach files (and headings) that exist; and no text of the repository points at documents
outside it.

The commands are checked against :func:`dataigm.cli.build_parser`, not run: a documented command may need data, a
GPU or the Hub.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from dataigm.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# every command has these, whatever its config class (jsonargparse adds --config and --print_config)
ALWAYS = {"--config", "--help", "-h", "--print_config"}
SEPARATORS = {"|", "||", "&&", ";", "&"}
# the blocks that hold command lines; output, YAML and diagrams are not read as commands
SHELL = {"bash", "sh", "shell", "console", "zsh"}
# words that run the command after them: `torchrun --nproc_per_node 8 $(which dataigm) judge train ...`
LAUNCHERS = {"torchrun", "nice", "time", "timeout"}
FENCE = re.compile(r"^(```|~~~)")


def _fenced_lines(text: str, languages: set[str] | None = None) -> list[tuple[int, str]]:
    """(line number, line) of every line inside a fenced code block (of one of ``languages``, when given)."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line.strip())
        if match and fence is None:
            fence = line.strip()[3:].strip().lower()
        elif match:
            fence = None
        elif fence is not None and (languages is None or fence in languages):
            lines.append((number, line))
    return lines


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Shell lines with ``\\`` continuations joined, numbered by their first line."""
    joined, pending, start = [], "", 0
    for number, line in lines:
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + line))
        pending = ""
    if pending:
        joined.append((start, pending))
    return joined


def _commands(line: str) -> list[list[str]]:
    """The argument lists of each ``dataigm`` command of a shell line (comments dropped, pipelines and ``&&`` split)."""
    line = line.replace("$(which dataigm)", "dataigm")  # torchrun ... $(which dataigm) judge train
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in a shell line is itself a documentation error
        return [["<unparsable line>"]]
    commands, current = [], []
    for token in [*tokens, ";"]:
        if token in SEPARATORS:
            words = [w for w in current if not re.match(r"[A-Z_][A-Z0-9_]*=", w)]  # VAR=value before a command
            names = [Path(w).name for w in words]
            if names and (names[0] == "dataigm" or (names[0] in LAUNCHERS and "dataigm" in names)):
                commands.append(words[names.index("dataigm") + 1 :])
            current = []
        else:
            current.append(token)
    return commands


def _options(parser) -> dict[str, object]:
    return {o: action for action in parser._actions for o in action.option_strings}


def _is_placeholder(token: str) -> bool:
    """``...``, ``X``, ``COMMAND``: words the docs use in place of a real command."""
    return token.strip("[]") in {"...", ""} or token.isupper()


def check_command(args: list[str]) -> list[str]:
    """The problems of one documented ``dataigm`` argument list: unknown commands or options."""
    parser, path, problems = build_parser(), ["dataigm"], []
    tokens = list(args)
    while tokens:
        token = tokens.pop(0)
        sub = parser._subcommands_action  # jsonargparse keeps a parser's subcommands here
        option = token.strip("[]").split("=", 1)[0]
        if option.startswith("-"):
            known = _options(parser)
            if option not in known and option not in ALWAYS:
                problems.append(f"{' '.join(path)}: no option {option}")
            elif sub is not None and option in known and known[option].nargs != 0 and "=" not in token and tokens:
                tokens.pop(0)  # a value of an option given before the subcommand (--log-level DEBUG)
            continue
        if sub is None:
            continue  # a positional argument or an option's value
        if _is_placeholder(token):
            return problems  # `dataigm X --help`: nothing more to check
        if token not in sub.choices:
            problems.append(f"{' '.join(path)}: no command {token!r} (known: {', '.join(sub.choices)})")
            return problems
        parser = sub.choices[token]
        path.append(token)
    required = parser._subcommands_action is not None and parser._subcommands_action.required
    if required and not {"--help", "-h"} & set(args):
        problems.append(f"{' '.join(path)}: needs a subcommand ({', '.join(parser._subcommands_action.choices)})")
    return problems


def _documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for number, line in _logical_lines(_fenced_lines(doc.read_text(encoding="utf-8"), SHELL)):
            for args in _commands(line):
                found.append((f"{doc.relative_to(REPO)}:{number}", args))
    return found


def test_the_checker_finds_unknown_commands_and_options():
    """The checker itself: a real command passes, a wrong option, subcommand or nested option is named."""
    assert check_command(["ingest", "photos/", "--out", "data", "--concept", "church", "--no-progress"]) == []
    assert check_command(["evaluate", "--config", "eval.yaml", "--generation.steps", "4", "--print_config"]) == []
    assert check_command(["--log-level", "DEBUG", "judge", "train", "--config", "j.yaml"]) == []
    assert check_command(["push", "judge", "...", "--agreement", "OUT"]) == []
    assert check_command(["ingest", "photos/", "--no-such-option", "1"]) == [
        "dataigm ingest: no option --no-such-option"
    ]
    assert check_command(["evaluate", "--generation.stepz", "4"]) == ["dataigm evaluate: no option --generation.stepz"]
    assert check_command(["judge", "trian"])[0].startswith("dataigm judge: no command 'trian'")
    assert check_command(["judge", "--config", "j.yaml"]) == [
        "dataigm judge: needs a subcommand (train, eval, push, agree)"
    ]
    # a pipeline, a comment and a continuation are read as a shell reads them
    lines = _logical_lines([(1, "dataigm info ROOT --json \\"), (2, "  | jq . # dataigm nothing --here")])
    assert lines == [(1, "dataigm info ROOT --json    | jq . # dataigm nothing --here")]
    assert _commands(lines[0][1]) == [["info", "ROOT", "--json"]]
    assert _commands("torchrun --nproc_per_node 8 $(which dataigm) judge train --config j.yaml") == [
        ["judge", "train", "--config", "j.yaml"]
    ]
    assert _commands("python recipes/toy_inputs.py work/ && HF_HUB_OFFLINE=1 dataigm build work/toy.yaml") == [
        ["build", "work/toy.yaml"]
    ]
    text = "```yaml\ndataigm: x  # not a command\n```\n```bash\ndataigm env\n```\n"
    assert _fenced_lines(text, SHELL) == [(5, "dataigm env")]


def test_the_docs_show_commands():
    """The scan reaches the docs: the README's tour and the pages of every command family."""
    names = {" ".join(a for a in args[:2] if not a.startswith("-")) for _, args in _documented_commands()}
    for expected in ("ingest", "generate", "judge train", "judge eval", "evaluate", "attack", "card"):
        assert any(name == expected or name.startswith(expected + " ") for name in names), expected


@pytest.mark.parametrize("where, args", _documented_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_documented_command_exists(where, args):
    assert check_command(args) == [], where


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen = set(), {}
    text = path.read_text(encoding="utf-8")
    fenced = {number for number, _ in _fenced_lines(text)}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match and number not in fenced:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _markdown_files() -> list[Path]:
    return [p for p in _repository_files() if p.suffix == ".md"]


def test_links_between_markdown_files_reach_files_and_headings_that_exist():
    broken = []
    for doc in _markdown_files():
        text = doc.read_text(encoding="utf-8")
        fenced = {number for number, _ in _fenced_lines(text)}
        for number, line in enumerate(text.splitlines(), 1):
            if number in fenced:
                continue
            for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                file, _, anchor = target.partition("#")
                path = (doc.parent / file).resolve() if file else doc
                where = f"{doc.relative_to(REPO)}:{number}: {target}"
                if not path.exists():
                    broken.append(where)
                elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                    broken.append(where + " (no such heading)")
    assert broken == []


def _repository_files() -> list[Path]:
    """Tracked and new (not ignored) files; the virtual environment and git's own files are never among them."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist)
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
        listed = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and not skip & set(p.parts)]
    return [REPO / name for name in listed if not name.startswith(".venv/") and (REPO / name).is_file()]


def test_no_text_refers_to_documents_outside_the_repository():
    """What a reader needs is in the repository (docs/): no pointer to design notes that are not in it."""
    # written in pieces so that this file does not match itself
    outside = [
        "DESIGN" + ".md",
        "DEVEL" + "OPERS",
        "DESIGN" + " §",
        "../" + "shared",
        "LIBRARY" + "-FACTS",
        "STYLE" + ".md",
    ]
    found = []
    for path in _repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files
        found += [f"{path.relative_to(REPO)}: {word}" for word in outside if word in text]
    assert found == []


def test_the_dataset_format_page_lists_the_schema_as_the_writer_checks_it():
    """docs/dataset-format.md's record table is the schema: every field, in order, with its version and nullability."""
    from dataigm.schema import FIELDS

    text = (REPO / "docs" / "dataset-format.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| (yes|no) \|", text, flags=re.M)
    assert rows == [(f.name, f.since, "yes" if f.nullable else "no") for f in FIELDS]


def test_the_readme_cites_the_paper_as_the_cards_do():
    """The README's BibTeX is the one every dataset card carries."""
    from cards.dataset_card import PAPER_CITATION

    assert PAPER_CITATION in (REPO / "README.md").read_text(encoding="utf-8")
