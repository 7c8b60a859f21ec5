"""Converts the OpenSPF RFC 7208 test suite (rfc7208-tests.yml, from the pyspf source
package on PyPI) into rfc7208-tests.json, which the Rust tests read. Run it after
updating the YAML: python3 to_json.py"""
import json, yaml, pathlib
here = pathlib.Path(__file__).parent
docs = list(yaml.safe_load_all(open(here / "rfc7208-tests.yml", encoding="utf-8")))
json.dump(docs, open(here / "rfc7208-tests.json", "w", encoding="utf-8"), indent=1, ensure_ascii=False)
