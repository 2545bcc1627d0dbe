"""Configuration: defaults load, overrides apply, and every mistake names the key and what is allowed."""
from __future__ import annotations

import pytest

from hdfsad.config import ConfigError, load_config, parse_override


def test_defaults_load_and_validate():
    cfg = load_config()
    assert cfg["spark"]["master"] == "local[*]"
    assert cfg["ingest"]["max_line_chars"] == 8192
    assert cfg["spark"]["conf"]["spark.sql.sources.partitionOverwriteMode"] == "dynamic"


def test_overrides_are_typed_and_spark_properties_keep_their_dots():
    cfg = load_config(overrides=["ingest.keep_events=true", "spark.conf.spark.sql.shuffle.partitions=3"])
    assert cfg["ingest"]["keep_events"] is True
    assert cfg["spark"]["conf"]["spark.sql.shuffle.partitions"] == 3
    assert cfg["spark"]["conf"]["spark.driver.memory"] == "4g"   # other properties survive the merge


def test_config_file_is_merged(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("ingest:\n  max_line_chars: 100\npaths:\n  tables: hdfs:///warehouse/hdfsad\n")
    cfg = load_config([str(f)])
    assert cfg["ingest"]["max_line_chars"] == 100 and cfg["paths"]["tables"] == "hdfs:///warehouse/hdfsad"
    assert cfg["ingest"]["reject_raw_chars"] == 2048


@pytest.mark.parametrize("override, message", [
    ("ingest.max_line_chars=abc", "configuration key 'ingest.max_line_chars': expected an integer >= 64, got 'abc'"),
    ("ingest.keep_events=maybe", "configuration key 'ingest.keep_events': expected true or false, got 'maybe'"),
    ("ingest.foo=1", "unknown configuration key 'ingest.foo'; allowed keys under 'ingest': keep_events, "
                     "max_events_per_block, max_line_chars, reject_raw_chars, verify_compressed"),
    ("sparks.master=x", "unknown configuration key 'sparks'; allowed keys: catalog, distributed, ingest, paths, score, spark, tracking"),
    ("ingest=3", "override 'ingest=3': key must be dotted, like ingest.keep_events"),
])
def test_bad_values_name_the_key_and_the_allowed_values(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert message in str(err.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override("ingest.keep_events")
    with pytest.raises(ConfigError, match="cannot read configuration file .*nope.yaml"):
        load_config([str(tmp_path / "nope.yaml")])


def test_a_section_that_is_not_a_mapping(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("ingest: 3\n")
    with pytest.raises(ConfigError, match="ingest: expected a mapping with keys keep_events, max_events_per_block"):
        load_config([str(f)])
