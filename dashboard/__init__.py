"""SAU Lab's Streamlit dashboard: ``streamlit run dashboard/app.py``.

Pages (``app_pages/``) only draw; the work is done by ``sau_core`` (jobs, runs, pictures), the
charts are built by :mod:`dashboard.charts` and the forms by :mod:`dashboard.widgets`.
"""
