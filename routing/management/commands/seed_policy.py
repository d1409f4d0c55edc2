from django.core.management.base import BaseCommand

from routing.policy_versions import policy_seed


class Command(BaseCommand):
    help = "Create the default models and routing rules that are missing (idempotent)."

    def handle(self, *args, **options) -> None:
        version = policy_seed()
        self.stdout.write(f"policy version {version.pk}")
