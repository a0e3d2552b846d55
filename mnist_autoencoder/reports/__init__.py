"""What people read: figures, Markdown and HTML sections, and each flow's report.

``figures`` draws (figures are return values), ``rendering`` turns sections into
Markdown and self-contained HTML; ``run``, ``score`` and ``sweep`` assemble the
reports of the pipeline, the scoring flow and the sweep.
"""
