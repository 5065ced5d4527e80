"""The interactive lsmkv shell (`lsmkv DBPATH` with no command): the commands of
the one-shot form (lsmkv.cli.shell), read with stdlib cmd + readline, on one DB kept
open from start to exit.

Tab completes command names and options; history is kept in ~/.lsmkv_history
when the home directory is writable. When stdin is not a terminal, commands are
read without prompt, banner or history, and the exit code is the last command's.
"""
import cmd
import os
import shlex
import sys

from lsmkv.errors import LsmkvError
from lsmkv.cli.commands import (
    COMMANDS,
    EXIT_DB_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    command_parser,
    describe_error,
    run,
)

REPL_QUIT = {"quit", "exit", ".quit", ".exit", ".q"}
HISTORY_FILE = ".lsmkv_history"


class Repl(cmd.Cmd):
    """The interactive shell: the commands of the one-shot form on one open DB."""

    INTRO = "lsmkv shell on {path}. Type `help` for the commands, `quit` or Ctrl-D to leave."

    def __init__(self, session, encoding="text", stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.session = session
        self.encoding = encoding
        self.parser = command_parser(prog="")
        self.status = EXIT_OK
        self.interactive = (stdin or sys.stdin).isatty()
        self.prompt = "lsmkv> " if self.interactive else ""
        self.history = None

    def run(self):
        """Open the DB (so a locked or damaged one fails now), then read commands."""
        if self.session.exists():
            try:
                self.session.db()
            except (LsmkvError, OSError) as e:
                sys.stderr.write(f"lsmkv: {describe_error(e)}\n")
                return EXIT_DB_ERROR
        elif self.interactive:
            sys.stderr.write(f"lsmkv: no database at {self.session.path} yet; a write creates it\n")
        self.history = setup_readline() if self.interactive else None
        try:
            self._loop()
        finally:
            save_history(self.history)
        return EXIT_OK if self.interactive else self.status

    def _loop(self):
        """Read commands until quit or EOF; Ctrl-C abandons the line (or, when
        reading a script, the script)."""
        intro = self.INTRO.format(path=self.session.path) if self.interactive else ""
        while True:
            try:
                self.cmdloop(intro)
                return
            except KeyboardInterrupt:
                if not self.interactive:
                    raise
                self.stdout.write("^C\n")
                intro = ""

    def emptyline(self):
        return False

    def onecmd(self, line):
        line = line.strip()
        if line == "EOF":
            if self.interactive:
                self.stdout.write("\n")
            return True
        if not line or line.startswith("#"):
            return False
        try:
            words = shlex.split(line)
        except ValueError as e:
            sys.stderr.write(f"lsmkv: {e}\n")
            self.status = EXIT_USAGE
            return False
        return self.run_words(words)

    def run_words(self, words):
        name = words[0]
        if name in REPL_QUIT:
            return True
        if name in ("help", ".help", "?"):
            self.show_help(words[1:])
            return False
        if name not in COMMANDS and not name.startswith("-"):
            sys.stderr.write(f"lsmkv: unknown command {name!r} (type `help` for the list)\n")
            self.status = EXIT_USAGE
            return False
        try:
            args = self.parser.parse_args(words)
        except SystemExit as e:          # argparse reported the error (or printed --help)
            self.status = EXIT_USAGE if e.code else EXIT_OK
            return False
        if args.encoding == "text":
            args.encoding = self.encoding
        self.status = run(self.session, args)
        return False

    def show_help(self, words):
        if words and words[0] in COMMANDS:
            self.stdout.write(self._sub_help(words[0]))
            return
        self.stdout.write("commands:\n")
        for n, (_, _, text) in COMMANDS.items():
            self.stdout.write(f"  {n:<14} {text}\n")
        self.stdout.write("  help [COMMAND] this list, or a command's options\n"
                          "  quit           leave (also exit, .quit, Ctrl-D)\n"
                          "Options --hex/--base64 work on every command. Quote keys with spaces.\n")

    def _sub_help(self, name):
        return self.parser.commands[name].format_help()

    # completion: command names first, then the chosen command's options
    def completenames(self, text, *ignored):
        names = list(COMMANDS) + ["help", "quit", "exit"]
        # Python's readline appends nothing to a completion: add the space here
        return [n + " " for n in names if n.startswith(text)]

    def completedefault(self, text, line, begidx, endidx):
        words = line.split()
        if not words or words[0] not in COMMANDS or not text.startswith("-"):
            return []
        opts = self.parser.options[words[0]] + ["--help", "-h"]
        return [o + " " for o in opts if o.startswith(text)]


def setup_readline():
    """Tab completion, and history in ~/.lsmkv_history when HOME is writable.
    Returns the history path (None: history is not saved)."""
    try:
        import readline
    except ImportError:
        return None
    readline.set_completer_delims(" \t\n\"'")
    home = os.path.expanduser("~")
    if not home or home == "~" or not os.path.isdir(home) or not os.access(home, os.W_OK):
        return None
    path = os.path.join(home, HISTORY_FILE)
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)
    return path


def save_history(path):
    if path is None:
        return
    try:
        import readline
        readline.write_history_file(path)
    except (ImportError, OSError):
        pass
