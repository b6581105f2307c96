"""supamigrate: move a Supabase project into a verified SQLite database."""

__version__ = "0.1.0"
