"""Per-class tables of an evaluation that stay readable from 2 to 250 signs.

Up to FULL_TABLE_SIGNS signs: per-class accuracy and the whole confusion matrix. Past that
(a 250 x 250 matrix fills no terminal): the classes with the lowest accuracy, each with the
sign it is most often taken for, and the largest confusions between two signs. The JSON of
`evaluate --json` holds the full per-class accuracy and confusion matrix either way.
"""

from rich.console import Console
from rich.table import Table
from rich.text import Text

FULL_TABLE_SIGNS = 20  # columns by number: 20 of them still fit in 100 columns
NUM_SHOWN = 15  # rows of the two short tables


def print_class_tables(console: Console, signs: list[str], result: dict) -> None:
    if len(signs) <= FULL_TABLE_SIGNS:
        print_full(console, signs, result)
    else:
        print_short(console, signs, result)


def print_full(console: Console, signs: list[str], result: dict) -> None:
    per_class = Table("sign", "sequences", "accuracy", title="per-class accuracy")
    for sign, count, accuracy in zip(
        signs, result["class_counts"], result["per_class_accuracy"], strict=True
    ):
        per_class.add_row(sign, str(count), "-" if accuracy is None else f"{accuracy:.1%}")
    console.print(per_class)
    # Columns by number, so that ten signs fit in 80 columns (names as headers would be cut).
    matrix = Table("true \\ predicted", *map(str, range(len(signs))), title="confusion matrix")
    for t, (sign, row) in enumerate(zip(signs, result["confusion"], strict=True)):
        cells = (
            Text(str(n), "bold") if p == t else (str(n) if n else "·") for p, n in enumerate(row)
        )
        matrix.add_row(f"{t} {sign}", *cells)
    console.print(matrix)


def top_confusions(confusion: list[list[int]], count: int) -> list[tuple[int, int, int]]:
    """(true class, predicted class, sequences) of the `count` largest off-diagonal cells,
    largest first, ties in class order."""
    cells = [
        (n, t, p) for t, row in enumerate(confusion) for p, n in enumerate(row) if n and p != t
    ]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [(t, p, n) for n, t, p in cells[:count]]


def worst_classes(result: dict, count: int) -> list[int]:
    """The `count` classes with sequences and the lowest accuracy, lowest first."""
    scored = [(a, k) for k, a in enumerate(result["per_class_accuracy"]) if a is not None]
    return [k for _, k in sorted(scored)[:count]]


def print_short(console: Console, signs: list[str], result: dict) -> None:
    accuracies = [a for a in result["per_class_accuracy"] if a is not None]
    empty = len(signs) - len(accuracies)
    console.print(
        f"{len(signs)} signs: mean per-class accuracy {sum(accuracies) / len(accuracies):.1%}, "
        f"{sum(a == 1 for a in accuracies)} signs all right, {sum(a == 0 for a in accuracies)} "
        f"all wrong" + (f", {empty} without sequences here" if empty else "")
    )
    confusion = result["confusion"]
    worst = Table(
        "sign", "sequences", "accuracy", "most often taken for", title="lowest per-class accuracy"
    )
    for k in worst_classes(result, NUM_SHOWN):
        row = confusion[k]
        others = [(n, p) for p, n in enumerate(row) if p != k and n]
        n, p = max(others, key=lambda other: (other[0], -other[1])) if others else (0, None)
        taken = "-" if p is None else f"{signs[p]} ({n})"
        accuracy = result["per_class_accuracy"][k]
        worst.add_row(signs[k], str(result["class_counts"][k]), f"{accuracy:.1%}", taken)
    console.print(worst)
    pairs = Table("true sign", "predicted", "sequences", "of the true sign", title="top confusions")
    for t, p, n in top_confusions(confusion, NUM_SHOWN):
        pairs.add_row(signs[t], signs[p], str(n), f"{n / result['class_counts'][t]:.1%}")
    console.print(pairs)
    console.print("the full per-class accuracy and confusion matrix: evaluate --json FILE")
