"""Reports: a run's result records as tables, the object-vs-part verdict, the paper's claims, figures,
hyperparameter searches and galleries, in the terminal, as Markdown and as one self-contained HTML page.

Public entry point: ``build_report(run_root, formats=..., compare_root=None)``. Everything is built from
``partaware.results.ResultRecord``s and the run folder's own files.
"""

from partaware.report.build import build_report, report_data

__all__ = ["build_report", "report_data"]
