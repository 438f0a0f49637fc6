"""querylearn subpackage."""
