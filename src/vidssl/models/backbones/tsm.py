"""(being written)"""

BUILDERS: dict = {}
