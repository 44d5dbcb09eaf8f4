{
  "targets": [
    {
      "target_name": "baton_native",
      "sources": ["native/baton_native.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
