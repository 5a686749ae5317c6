"""Shell completion scripts for bash and zsh, made from the command's own parser.

`fibod completion bash|zsh` prints one, so a new option or command is
completed as soon as the parser has it: subcommands (nested: cache
stats), options, the choices of an option or argument, file names after
options whose value is a FILE.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Option:
    """One option of a command: its spellings and what follows it."""

    flags: tuple[str, ...]
    help: str
    takes_value: bool
    metavar: str
    choices: tuple[str, ...] = ()

    @property
    def is_file(self) -> bool:
        """Tell whether the value names a file."""
        return self.metavar == "FILE"


@dataclass(frozen=True)
class Command:
    """A command or subcommand: its path from the top, options and arguments."""

    path: tuple[str, ...]
    options: list[Option]
    #: Subcommand name -> its one-line help.
    subcommands: dict[str, str] = field(default_factory=dict)
    #: Each positional argument: metavar and choices.
    positionals: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Command]:
    """Describe a parser and every subparser under it, top first."""
    options: list[Option] = []
    positionals: list[tuple[str, tuple[str, ...]]] = []
    subcommands: dict[str, str] = {}
    below: list[Command] = []
    for action in parser._actions:
        choices = tuple(str(c) for c in action.choices or ()) if action.choices else ()
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                subcommands[name] = helps.get(name, "")
                below += walk(sub, (*path, name))
        elif action.option_strings:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            options.append(
                Option(
                    tuple(action.option_strings),
                    (action.help or "").split(";")[0].split(" (")[0],
                    action.nargs != 0,
                    metavar,
                    choices,
                )
            )
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest
            positionals.append((metavar, choices))
    return [Command(path, options, subcommands, positionals), *below]


def bash_script(parser: argparse.ArgumentParser) -> str:
    """Return a bash completion script (`complete -F _fibod fibod`)."""
    prog = parser.prog
    commands = walk(parser)
    skip, enter, values, words = [], [], [], []
    for command in commands:
        key = "/".join(command.path)
        for option in command.options:
            if not option.takes_value:
                continue
            labels = "|".join(f'"{key}:{flag}"' for flag in option.flags)
            skip.append(labels)
            if option.choices:
                values.append(f"{labels}) _{prog}_words {' '.join(option.choices)}; return ;;")
            elif option.is_file:
                values.append(f'{labels}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
            else:
                values.append(f"{labels}) return ;;  # a value: nothing to offer")
        for name in command.subcommands:
            enter.append(f'"{key}:{name}"')
        offer = [name for name in command.subcommands]
        offer += [flag for option in command.options for flag in option.flags]
        offer += [c for _, choices in command.positionals for c in choices]
        words.append(f'"{key}") _{prog}_words {" ".join(offer)} ;;')
    return f"""# bash completion for {prog}: `{prog} completion bash` wrote it from the parser.
_{prog}_words() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}}
    COMPREPLY=($(compgen -W "$*" -- "$cur"))
}}

_{prog}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local cmd="" word i skip=0
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        if ((skip)); then
            skip=0
            continue
        fi
        case "$cmd:$word" in
            {_cases(skip, "skip=1 ;;")}
            {_cases(enter, 'cmd="${cmd:+$cmd/}$word" ;;')}
        esac
    done
    if ((COMP_CWORD > 1)); then
        case "$cmd:$prev" in
            {_join(values, 12)}
        esac
    fi
    case "$cmd" in
        {_join(words, 8)}
    esac
}}
complete -F _{prog} {prog}
"""


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """Return a zsh completion function (#compdef), one function per command."""
    prog = parser.prog
    functions = [_zsh_function(prog, command) for command in walk(parser)]
    body = "\n\n".join(functions)
    return f"""#compdef {prog}
# zsh completion for {prog}: `{prog} completion zsh` wrote it from the parser.
# Put it on $fpath as _{prog} (autoloaded), or source it after compinit.

{body}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _{prog} "$@"
else
    compdef _{prog} {prog}
fi
"""


def _zsh_function(prog: str, command: Command) -> str:
    name = "_" + "_".join((prog, *command.path))
    specs = [_zsh_option(option) for option in command.options]
    for metavar, choices in command.positionals:
        action = f"({' '.join(choices)})" if choices else " "
        specs.append(f"':{_zsh_escape(metavar)}:{action}'")
    if not command.subcommands:
        lines = " \\\n        ".join(specs)
        return f"{name}() {{\n    _arguments -s \\\n        {lines}\n}}"
    specs += ["'1: :->command'", "'*:: :->args'"]
    lines = " \\\n        ".join(specs)
    described = " ".join(
        f"'{_zsh_escape(sub)}:{_zsh_escape(text, described=True)}'"
        for sub, text in command.subcommands.items()
    )
    cases = "\n".join(f"                {sub}) {name}_{sub} ;;" for sub in command.subcommands)
    return f"""{name}() {{
    local curcontext=$curcontext state line ret=1
    local -a commands
    _arguments -C -s \\
        {lines} && ret=0
    case $state in
        command)
            commands=({described})
            _describe -t commands command commands && ret=0
            ;;
        args)
            case $line[1] in
{cases}
            esac
            ;;
    esac
    return ret
}}"""


def _zsh_option(option: Option) -> str:
    helptext = _zsh_escape(option.help)
    if option.takes_value:
        if option.choices:
            action = f"({' '.join(option.choices)})"
        elif option.is_file:
            action = "_files"
        else:
            action = " "
        value = f":{_zsh_escape(option.metavar)}:{action}"
    else:
        value = ""
    if len(option.flags) == 1:
        return f"'{option.flags[0]}[{helptext}]{value}'"
    exclusive = " ".join(option.flags)
    braces = ",".join(option.flags)
    return f"'({exclusive})'{{{braces}}}'[{helptext}]{value}'"


def _zsh_escape(text: str, described: bool = False) -> str:
    """Make text safe inside a single-quoted _arguments spec."""
    text = text.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]")
    return text.replace(":", "\\:") if described else text


def _cases(labels: list[str], action: str) -> str:
    return f"{'|'.join(labels)}) {action}" if labels else ""


def _join(lines: list[str], indent: int) -> str:
    return ("\n" + " " * indent).join(lines)
