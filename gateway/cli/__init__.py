"""What the ``gateway`` sub-commands of every feature share (settings, a signing client)."""
