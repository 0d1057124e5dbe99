//! `GET /`: where the web console will live. Until it is built, a page that
//! says what is running and how to connect.

use axum::response::Html;

pub async fn home() -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Switchboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}}code{{background:#f2f2f2;padding:0 .2em}}</style>
</head>
<body>
<h1>Switchboard {version}</h1>
<p>The server is running. The web console is not part of this build yet;
connect with the official Socket.IO client instead:</p>
<pre><code>import {{ io }} from "socket.io-client";
const socket = io(location.origin + "/agent", {{ auth: {{ token }} }});
const {{ session }} = await socket.emitWithAck("session:create", {{ title: "hello" }});</code></pre>
<p>The token printed by <code>switchboard serve --dev</code> is also in this page's
address, after <code>#token=</code> (the part of an address that browsers never send
to the server).</p>
<p>HTTP: <code>GET /healthz</code>, <code>GET /readyz</code>, <code>GET /metrics</code>,
<code>/v1/sessions</code> (Bearer token or cookie).</p>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
    ))
}
