"""``veil recipe``: list, show, check and compare recipes; ask whether the free-text vocabulary keeps a
word."""

from __future__ import annotations

import argparse

from veil.cli.exits import EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = subparsers.add_parser("recipe", help="list, show, check and compare recipes; look words up")
    rs = r.add_subparsers(dest="recipe_command", required=True)
    rs.add_parser("list", help="the shipped recipes")
    show = rs.add_parser("show", help="the resolved rules of a recipe")
    show.add_argument("name")
    check = rs.add_parser("check", help="validate a recipe file")
    check.add_argument("file")
    diff = rs.add_parser("diff", help="rules that differ between two recipes")
    diff.add_argument("a")
    diff.add_argument("b")
    vocab = rs.add_parser(
        "vocab", help="whether the free-text cleaner's vocabulary keeps a word, and which list holds it"
    )
    vocab.add_argument("words", nargs="+", metavar="WORD")
    vocab.add_argument(
        "--recipe", metavar="NAME_OR_FILE", help="include the words this recipe's vocabulary: adds"
    )


def command(args: argparse.Namespace) -> int:
    import veil.recipes as recipes

    if args.recipe_command == "list":
        for info in recipes.list_recipes():
            print(f"{info.name:36s} {info.version:10s} {info.description}")
    elif args.recipe_command == "show":
        print(recipes.load_recipe(args.name).show())
    elif args.recipe_command == "check":
        r = recipes.check_recipe(args.file)
        print(f"{args.file}: ok ({r.name} {r.version}, sha256 {r.content_hash[:16]})")
    elif args.recipe_command == "diff":
        print(recipes.diff_recipes(args.a, args.b))
    elif args.recipe_command == "vocab":
        from veil.recipes.vocabulary import Vocabulary

        extra = recipes.load_recipe(args.recipe).vocabulary if args.recipe else ()
        vocabulary = Vocabulary(extra)
        for word in args.words:
            source = vocabulary.why(word)
            print(f"{word}: kept ({source})" if source else f"{word}: not in the vocabulary")
    return EXIT_OK
