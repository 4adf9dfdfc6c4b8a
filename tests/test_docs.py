"""The documentation stays true to the clone: every relative link of README.md and docs/*.md leads to a file that
exists (and an #anchor to a heading of it), and every `python SCRIPT.py ...` or `python -m benchmarks.bench ...`
command their code blocks show names a script whose argument parser accepts it. Commands are parsed only (the
script's get_args_parser().parse_args), never run: the placeholders they name (ILSVRC2012, photos) need not exist."""

import contextlib
import functools
import glob
import importlib
import importlib.util
import io
import os
import re
import shlex
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", *sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
# What the docs must show a command of, at least once each: the scripts and the benchmark
EXPECTED_COMMANDS = {
    "train.py",
    "test.py",
    "classify.py",
    "export.py",
    "import_weights.py",
    "prepare_data.py",
    "figures.py",
    "features.py",
    "benchmarks/bench.py",
}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(].*?[\"')])?\s*\)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
INLINE_CODE = re.compile(r"(`+).*?\1")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
LAUNCHERS = {"srun", "mpirun", "mpiexec", "nohup", "time", "env", "exec", "nice", "torchrun"}  # run the command after
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
CODE_LANGUAGES = {"", "shell", "sh", "bash", "console", "shell-session", "zsh"}  # blocks of commands (not python)


def read(doc):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return f.read()


def blocks(text):
    """(language, first line number, lines) of each fenced code block, and the lines outside them as (number, line)."""
    found, outside, fence, language, start, lines = [], [], None, "", 0, []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, language, start, lines = match.group(1), match.group(2).lower(), number + 1, []
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            found.append((language, start, lines))
            fence = None
        elif fence is not None:
            lines.append(line)
        else:
            outside.append((number, line))
    return found, outside


def slug(heading):
    """GitHub's anchor of a heading: the text without its markup, lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.cache
def anchors(doc):
    """Every anchor of a Markdown file: its headings' slugs (repeats numbered, as GitHub does) and HTML anchors."""
    seen, found = {}, set()
    _, outside = blocks(read(doc))
    for _, line in outside:
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(doc):
    """(line number, target) of each link of `doc` outside code blocks and inline code."""
    _, outside = blocks(read(doc))
    return [(number, target) for number, line in outside for target in LINK.findall(INLINE_CODE.sub("", line))]


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves(doc):
    assert os.path.isfile(os.path.join(ROOT, doc))
    wrong = []
    for number, target in links(doc):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # a web address: not checked offline
        path, _, anchor = urllib.parse.unquote(target).partition("#")
        resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), path)) if path else os.path.join(ROOT, doc)
        if not os.path.exists(resolved):
            wrong.append(f"{doc}:{number}: {target}: {os.path.relpath(resolved, ROOT)} does not exist")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(os.path.relpath(resolved, ROOT)):
            wrong.append(f"{doc}:{number}: {target}: no heading with the anchor #{anchor}")
    assert not wrong, "\n".join(wrong)


def command_lines(text):
    """(line number, line) of the commands in the code blocks of `text`: continuation lines joined, prompts removed."""
    found, _ = blocks(text)
    commands = []
    for language, start, lines in found:
        if language not in CODE_LANGUAGES:
            continue
        pending, first = "", None
        for number, line in enumerate(lines, start):
            line = re.sub(r"^\s*\$ ", "", line) if not pending else line
            first = number if not pending else first
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            commands.append((first, pending + line))
            pending = ""
        if pending:
            commands.append((first, pending))
    return commands


def python_commands(line):
    """The (script path relative to the clone, arguments) of each python command of a shell line: through `&&`, `;`
    and pipes, after environment assignments (TF_CONFIG='...') and launchers (srun ...), before `# comments`. A
    `python -m MODULE` names its file when MODULE is a package or module of the clone; other modules (pytest, venv,
    pip) are left out."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # be specific: an unbalanced quote, not a shell line (a layout drawing)
        return []
    simple, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            simple.append(current)
            current = []
        else:
            current.append(token)
    simple.append(current)
    found = []
    for words in simple:
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if not words or not (PYTHON.match(os.path.basename(words[0])) or words[0] in LAUNCHERS):
            continue
        at = next((i for i, word in enumerate(words) if PYTHON.match(os.path.basename(word))), None)
        if at is None:
            continue
        rest = words[at + 1 :]
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            rest = rest[1:]  # the interpreter's own options (-u, -O)
        if not rest or rest[0] == "-c":
            continue
        if rest[0] == "-m" and len(rest) > 1:
            module = rest[1]
            if not os.path.exists(os.path.join(ROOT, module.split(".")[0])) and not os.path.exists(
                os.path.join(ROOT, module.split(".")[0] + ".py")
            ):
                continue  # not the clone's: pytest, venv, pip
            found.append((module.replace(".", "/") + ".py", rest[2:]))
        elif rest[0].endswith(".py"):
            found.append((os.path.normpath(rest[0]), rest[1:]))
    return found


def documented_commands():
    return [
        (doc, number, script, args)
        for doc in DOCS
        for number, line in command_lines(read(doc))
        for script, args in python_commands(line)
    ]


COMMANDS = documented_commands()


def test_the_command_finder_reads_shell_lines_as_a_shell_does():
    text = "\n".join(
        [
            "```shell",
            "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && python train.py "
            "-scratch --sample && python test.py --sample   # then",
            'TF_CONFIG=\'{"cluster": {"worker": ["h:1"]}, "task": {"index": 0}}\' \\',
            "    python train.py -scratch --data-dir /shared/x \\",
            "    --lr 0.02",
            "srun --nodes 2 python -u train.py -resume",
            "# python nothing.py",
            "python -m pytest tests -m 'not slow'; python -m benchmarks.bench --quick",
            "tensorboard --logdir ckpt-alexnet",
            "```",
            "```python",
            "print('python train.py --no-such-flag')",
            "```",
        ]
    )
    found = [(number, python_commands(line)) for number, line in command_lines(text)]
    assert found == [
        (2, [("train.py", ["-scratch", "--sample"]), ("test.py", ["--sample"])]),
        (3, [("train.py", ["-scratch", "--data-dir", "/shared/x", "--lr", "0.02"])]),
        (6, [("train.py", ["-resume"])]),
        (7, []),
        (8, [("benchmarks/bench.py", ["--quick"])]),
        (9, []),
    ]


def test_the_docs_show_a_command_of_every_script():
    assert EXPECTED_COMMANDS <= {script for _, _, script, _ in COMMANDS}


@functools.cache
def parser_of(script):
    """The argparse parser of a script of the clone, its module loaded from its path (its main is not called)."""
    path = os.path.join(ROOT, script)
    name = "docs_" + re.sub(r"\W", "_", script[: -len(".py")])
    if os.path.dirname(script):  # a module of a package (benchmarks/bench.py): imported as `python -m` runs it
        module = importlib.import_module(script[: -len(".py")].replace("/", "."))
    else:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    assert hasattr(module, "get_args_parser"), f"{script} has no get_args_parser(): not a script of the clone"
    return module.get_args_parser()


@pytest.mark.parametrize(
    "doc, number, script, args",
    COMMANDS,
    ids=[f"{doc}:{number}:{script}" for doc, number, script, _ in COMMANDS],
)
def test_every_documented_command_parses(doc, number, script, args):
    assert os.path.isfile(os.path.join(ROOT, script)), f"{doc}:{number}: {script} does not exist"
    parser = parser_of(script)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            parser.parse_args(args)
        refused = None
    except SystemExit:  # be specific: argparse's way of refusing a command line
        refused = said.getvalue().strip().splitlines()[-1:]
    assert refused is None, f"{doc}:{number}: python {script} {shlex.join(args)}: {' '.join(refused)}"
