"""Command-line tools around the template: model export and inspection, data conversion, demo assets."""
