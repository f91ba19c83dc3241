"""mailreleased: tell remote mail hosts to release the mail they hold for your domains."""

__version__ = "0.1.0"
