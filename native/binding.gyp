{
  "targets": [
    {
      "target_name": "vnet_native",
      "sources": [
        "src/addon.cc",
        "src/flock.cc",
        "src/bpf_common.cc",
        "src/bpf_object.cc",
        "src/bpf_program.cc",
        "src/bpf_map.cc",
        "src/tc.cc",
        "src/layouts.cc",
        "src/netlink.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "../bpf/include"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-O2",
        "-Wall"
      ],
      "libraries": [
        "-lbpf",
        "-lelf",
        "-lz"
      ]
    }
  ]
}
