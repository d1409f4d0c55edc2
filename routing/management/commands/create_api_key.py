from django.core.management.base import BaseCommand, CommandError

from routing.api_keys import api_key_create
from routing.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key; the key is printed once, on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Name of the client application, shown in reports.")

    def handle(self, *args, **options) -> None:
        name = options["name"]
        if ApiKey.objects.filter(name=name).exists():
            raise CommandError(f"An API key named '{name}' already exists.")
        api_key, plaintext = api_key_create(name=name)
        self.stdout.write(f"Created API key '{api_key.name}' ({api_key.prefix}...). Store it now:")
        self.stdout.write(plaintext)
