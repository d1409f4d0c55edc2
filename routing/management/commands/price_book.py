from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from routing.price_book_io import (
    FORMATS,
    PriceBookImportError,
    price_book_export,
    price_book_import,
)


class Command(BaseCommand):
    help = (
        "Export the price book (every model's price rows) as JSON or CSV, or import such a file: "
        "all or nothing, every bad row named. `price_book export --format csv > prices.csv`, "
        "`price_book import prices.csv`."
    )

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        export = sub.add_parser("export", help="Write the price book to stdout.")
        export.add_argument("--format", choices=FORMATS, default="json")
        load = sub.add_parser("import", help="Read a .json or .csv price book file.")
        load.add_argument("path")
        load.add_argument("--format", choices=FORMATS, help="default: from the file's suffix")

    def handle(self, *args, **options) -> None:
        if options["action"] == "export":
            self.stdout.write(price_book_export(options["format"]), ending="")
            return
        path = Path(options["path"])
        fmt = options["format"] or ("csv" if path.suffix.lower() == ".csv" else "json")
        try:
            result = price_book_import(
                path.read_text(encoding="utf-8-sig"), fmt, actor="manage.py price_book"
            )
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        except PriceBookImportError as exc:
            raise CommandError("nothing imported:\n" + "\n".join(exc.errors)) from exc
        self.stdout.write(
            f"price book: {result.added} row(s) added, {result.corrected} corrected, "
            f"{result.unchanged} unchanged"
        )
