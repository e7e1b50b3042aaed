"""Gateway test fixtures: descriptor sets compiled with source info, and a probe service proto
with the shapes webhookd's protos do not have yet (nested query fields, `**`, a stream, a listed
resource whose request has every kind of field a query parameter may or may not name)."""

from __future__ import annotations

import importlib
import importlib.resources
import sys
from pathlib import Path
from types import ModuleType

import google.api
import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"

PROBE_PROTO = """
syntax = "proto3";
package gatewaytest.v1;

import "google/api/annotations.proto";
import "google/api/field_behavior.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

// A service only the gateway tests use.
service ProbeService {
  // Searches items on a shelf.
  rpc Search(SearchRequest) returns (SearchResponse) {
    option (google.api.http) = {
      get: "/v1/{parent.name=shelves/*}/items"
      additional_bindings { get: "/v1/all-items" }
    };
  }
  // Reads a file by path.
  rpc ReadFile(ReadFileRequest) returns (ReadFileResponse) {
    option (google.api.http) = {get: "/v1/files/{path=**}"};
  }
  // Follows a probe's log.
  rpc Tail(TailRequest) returns (stream TailResponse) {
    option (google.api.http) = {get: "/v1/probes/{probe_id}/log"};
  }
  // Lists items.
  rpc ListItems(ListItemsRequest) returns (ListItemsResponse) {
    option (google.api.http) = {get: "/v1/items"};
  }
}

enum Color {
  COLOR_UNSPECIFIED = 0;
  COLOR_RED = 1;
  COLOR_DARK_BLUE = 2;
}

message Parent { string name = 1; }

message Filter {
  int32 min_size = 1;
  Color color = 2;
}

message SearchRequest {
  Parent parent = 1;
  repeated string tags = 2;
  Filter filter = 3;
  google.protobuf.Timestamp since = 4;
  repeated Color colors = 5;
  int64 limit = 6;
  map<string, string> labels = 7;
}

message SearchResponse { repeated string items = 1; }

// A chain deeper than query parameters go, and a cycle.
message Shelf {
  string name = 1;
  Room room = 2;
  Shelf next = 3;
}
message Room {
  string name = 1;
  Building building = 2;
}
message Building { string name = 1; }

message Item { string name = 1; }

message ListItemsRequest {
  Filter filter = 1;
  Shelf shelf = 2;
  repeated Filter filters = 3;
  map<string, string> labels = 4;
  string etag = 5 [(google.api.field_behavior) = OUTPUT_ONLY];
  google.protobuf.Timestamp since = 6;
  google.protobuf.Duration max_age = 7;
  google.protobuf.FieldMask read_mask = 8;
  google.protobuf.Int32Value min_count = 9;
  google.protobuf.Struct extra = 10;
  repeated google.protobuf.Timestamp days = 11;
  repeated string tags = 12;
}

message ListItemsResponse { repeated Item items = 1; }

message ReadFileRequest { string path = 1; }
message ReadFileResponse { string path = 1; }

message TailRequest {
  string probe_id = 1 [(google.api.field_behavior) = REQUIRED];
  string after_cursor = 2;
  int32 count = 3;
  bool fail_midway = 4;
  bool hold_after_first = 5;
  bool hold_before_first = 6;
}

message Entry {
  string cursor = 1;
  string text = 2;
}

message TailResponse { Entry entry = 1; }
"""


def include_args() -> list[str]:
    googleapis = Path(google.api.__path__[0]).parent.parent
    well_known = Path(str(importlib.resources.files("grpc_tools") / "_proto"))
    return [f"-I{googleapis}", f"-I{well_known}"]


@pytest.fixture(scope="session")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the generation step is asked to ship: the cpod protos with source info (no imports)."""
    out = tmp_path_factory.mktemp("descriptors") / "descriptor_set.binpb"
    files = [str(p.relative_to(PROTOS)) for p in sorted(PROTOS.rglob("*.proto"))]
    args = ["protoc", f"-I{PROTOS}", *include_args(), "--include_source_info"]
    assert protoc.main([*args, f"--descriptor_set_out={out}", *files]) == 0
    return out


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType, Path]:
    """(probe_pb2, probe_pb2_grpc, its descriptor set with comments)."""
    root = tmp_path_factory.mktemp("probe")
    source = root / "src" / "gatewaytest" / "v1"
    source.mkdir(parents=True)
    (source / "probe.proto").write_text(PROBE_PROTO)
    out = root / "out"
    out.mkdir()
    descriptors = root / "probe.binpb"
    args = ["protoc", f"-I{root / 'src'}", *include_args(), f"--python_out={out}", f"--grpc_python_out={out}"]
    args += ["--include_source_info", f"--descriptor_set_out={descriptors}", "gatewaytest/v1/probe.proto"]
    assert protoc.main(args) == 0
    sys.path.insert(0, str(out))
    messages = importlib.import_module("gatewaytest.v1.probe_pb2")
    stubs = importlib.import_module("gatewaytest.v1.probe_pb2_grpc")
    return messages, stubs, descriptors
