"""The demo district: synthetic people and companies in the providers' own databases, and the
walkthrough that ``gateway demo`` runs against a live gateway."""
