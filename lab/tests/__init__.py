"""The lab's end-to-end tests, one file a feature (test_<feature>.py); lab/run.py discovers every
function decorated @lab_test in them (kit/registry.py)."""
