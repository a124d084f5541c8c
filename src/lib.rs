//! ngx_http_static_gen_module
