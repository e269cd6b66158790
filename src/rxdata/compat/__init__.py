"""Drop-in replacements for rxrx1-utils modules, built on rxdata's public API.

:mod:`rxdata.compat.io` has the names, argument orders and defaults of rxrx1-utils'
``rxrx.io``, so migrating is one line::

    from rxdata.compat import io as rio  # was: from rxrx import io as rio

These names are not part of ``rxdata.__all__``: new code should call ``rxdata`` directly
(see the migration guide, ``docs/migration.md``).

Example:
    >>> from rxdata.compat import io as rio
    >>> rio.image_path("train", "HEPG2-01", 1, "B03", 2, 5, "/data/images")
    '/data/images/train/HEPG2-01/Plate1/B03_s2_w5.png'
"""
