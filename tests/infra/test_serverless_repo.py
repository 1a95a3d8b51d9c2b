"""The Serverless Application Repository metadata, validated offline.

SAM CLI carries AWS's `serverlessrepo` library (samcli.vendor.serverlessrepo: the parser and the
validator that `sam publish` runs; the PyPI release pins PyYAML 5, which does not build on Python
3.13). The probe below runs them in the tools venv, then `sam package`'s own exporter with an
uploader that records instead of uploading, so LicenseUrl and ReadmeUrl are shown to be files that
`sam package` uploads. The API's own limits on each field (CreateApplication in the Serverless
Application Repository API reference) are checked here, since the library leaves them to the
service.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.infra.cfn import REPO_ROOT, TEMPLATE_PATH

if TYPE_CHECKING:
    from tests.infra.conftest import Tools

PROBE = """
import json, sys
from pathlib import Path
from samcli.lib.package.artifact_exporter import Template
from samcli.lib.package.uploaders import Uploaders
from samcli.vendor.serverlessrepo.parser import get_app_metadata, parse_template

class RecordingS3:
    bucket_name = "offline-bucket"
    prefix = "cekura-rotator"

    def __init__(self):
        self.uploaded = []

    def upload_with_dedup(self, path, extension=None, precomputed_md5=None):
        self.uploaded.append(path)
        return f"s3://{self.bucket_name}/{self.prefix}/{Path(path).name}"

class NoSigning:
    def should_sign_package(self, resource_id):
        return False

template_path = Path(sys.argv[1]).resolve()
app = get_app_metadata(parse_template(template_path.read_text()))
app.validate(["author", "description", "name"])  # what `sam publish` checks to create the app
app.validate(["semantic_version"])  # ... and to create a version of it
s3 = RecordingS3()
packaged = Template(
    str(template_path), str(template_path.parent), Uploaders(s3, None), NoSigning(),
    resources_to_export=frozenset(),
).export()
print(json.dumps({
    "metadata": dict(app.template_dict),
    "uploaded": s3.uploaded,
    "packaged": dict(packaged["Metadata"]["AWS::ServerlessRepo::Application"]),
}))
"""

# CreateApplication's limits (botocore's serverlessrepo model documents the same).
AUTHOR = re.compile(r"^[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?$")
NAME = re.compile(r"[a-zA-Z0-9\-]{1,140}")
LABEL = re.compile(r"^[a-zA-Z0-9+\-_:\/@]{1,127}$")
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?"
)
PLACEHOLDER_HOSTS = re.compile(r"https?://([^/]*\.)?(example\.(com|org|net)|localhost)\b")


def _probe(tools: Tools, template: Path) -> dict[str, Any]:
    result = tools.run("python", "-c", PROBE, str(template))
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def probed(tools: Tools) -> dict[str, Any]:
    return _probe(tools, TEMPLATE_PATH)


def test_serverlessrepo_parses_and_validates_the_metadata(probed: dict[str, Any]) -> None:
    # Given the metadata as AWS's serverlessrepo library parsed and validated it (the probe
    # exits non-zero on a missing Name, Description, Author or SemanticVersion)
    app = probed["metadata"]
    # When each field is checked against the API's limits
    # Then the service would accept it
    assert AUTHOR.fullmatch(app["Author"])
    assert len(app["Author"]) <= 127
    assert NAME.fullmatch(app["Name"])
    assert 1 <= len(app["Description"]) <= 256
    assert 1 <= len(app["Labels"]) <= 10
    assert all(LABEL.fullmatch(label) for label in app["Labels"])
    assert SEMVER.fullmatch(app["SemanticVersion"])
    assert app["SpdxLicenseId"] == "Apache-2.0"


def test_no_placeholder_or_untrue_url(probed: dict[str, Any]) -> None:
    # Given every URL field of the metadata
    app = probed["metadata"]
    urls = {key: value for key, value in app.items() if key.endswith("Url")}
    # When they are read
    # Then none points at a placeholder host, the project page and source fields are left out
    # (the project has no public URL to give), and the rest are local files
    assert not [value for value in urls.values() if PLACEHOLDER_HOSTS.search(value)]
    assert "HomePageUrl" not in app
    assert "SourceCodeUrl" not in app
    assert set(urls) == {"LicenseUrl", "ReadmeUrl"}


def test_sam_package_uploads_the_license_and_the_readme(probed: dict[str, Any]) -> None:
    # Given `sam package`'s exporter run over the template with a recording uploader
    uploaded = [Path(p) for p in probed["uploaded"]]
    packaged = probed["packaged"]
    # When its uploads are read
    # Then it uploaded the repository's LICENSE and README.md and put their S3 URLs in place
    assert uploaded == [REPO_ROOT / "LICENSE", REPO_ROOT / "README.md"]
    assert packaged["LicenseUrl"] == "s3://offline-bucket/cekura-rotator/LICENSE"
    assert packaged["ReadmeUrl"] == "s3://offline-bucket/cekura-rotator/README.md"
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")


def test_the_probe_refuses_a_readme_that_is_not_there(tools: Tools, tmp_path: Path) -> None:
    # Given a copy of the template whose ReadmeUrl names a missing file (and the LICENSE beside it)
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert "    ReadmeUrl: README.md\n" in text
    copy = tmp_path / "template.yaml"
    copy.write_text(text.replace("ReadmeUrl: README.md", "ReadmeUrl: MISSING.md"), "utf-8")
    shutil.copy(REPO_ROOT / "LICENSE", tmp_path / "LICENSE")
    # When the probe runs on it
    result = tools.run("python", "-c", PROBE, str(copy))
    # Then `sam package`'s exporter fails, as it would for the real command
    assert result.returncode != 0
    assert "MISSING.md" in result.stderr
