"""Every file vmstation writes to a host, as Jinja templates.

This directory stays at the top of the repository; setup.cfg ships it inside the wheel as the package
``vmstation.template_files`` (this file makes it a regular package, which editable installs need), and
``vmstation.templates`` reads it with importlib.resources.
"""
