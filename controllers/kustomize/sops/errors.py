"""The one error type of SOPS decryption.

Messages name files, objects, value paths and key ids; they never carry a decrypted value.
"""


class DecryptionError(Exception):
    """Decryption failed; the message is safe to show in a condition, an Event or a log."""


class MacMismatchError(DecryptionError):
    """The document was changed after it was encrypted (a value's GCM tag or the document MAC)."""


class YAMLAliasRefused(DecryptionError):
    """A SOPS YAML document uses aliases (an alias bomb expands exponentially on every walk)."""
