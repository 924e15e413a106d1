"""``pyhall completion bash|zsh``: a shell completion script built from the parser."""

from __future__ import annotations

import argparse

_BASH = """# pyhall completion: eval "$(pyhall completion bash)"
_pyhall() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="${{COMP_WORDS[1]}}" words
    if [ "$COMP_CWORD" -eq 1 ]; then
        words="{commands}"
    else
        case "$cmd" in
{cases}
            *) words="" ;;
        esac
    fi
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
    [ ${{#COMPREPLY[@]}} -eq 0 ] && COMPREPLY=( $(compgen -f -- "$cur") )
}}
complete -F _pyhall pyhall
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("completion", help="print a shell completion script")
    parser.add_argument("shell", choices=["bash", "zsh"])
    parser.set_defaults(func=run)


def _words(parser: argparse.ArgumentParser) -> list[str]:
    words: list[str] = []
    for action in parser._actions:
        words.extend(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            words.extend(action.choices)
    return words


def run(args: argparse.Namespace) -> int:
    from . import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = "\n".join(
        f'            {name}) words="{" ".join(_words(p))}" ;;' for name, p in sub.choices.items()
    )
    script = _BASH.format(commands=" ".join(sub.choices), cases=cases)
    if args.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    print(script)
    return 0
