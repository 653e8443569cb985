"""Pre-translating gettext catalogs through the service's HTTP API (``attn-translate-po``).

text.py (accelerators, lines, stand-ins) → batches.py (POST /translate in batches)
→ catalog.py (which entries, filling, writing back) → cli.py.
"""
