//! nginx (Debian's package) in front of farmcam, set up the way MainsailOS and FluiddPI set it
//! up: `/webcam/` to the main port (with README's X-Forwarded-* headers) and `/webcam2/` to a
//! dedicated port with buffering off, `/buffered/` to the main port with nginx's default
//! buffering, and `/stock/` as MainsailOS's own block (an upstream name, no forwarded headers).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::proc::{free_port, terminate};

pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(main: SocketAddr, dedicated: SocketAddr) -> Nginx {
        super::peers::require("nginx", "nginx-light");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /webcam/ {{
            proxy_pass http://{main}/;
            proxy_buffering off;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Prefix /webcam;
        }}
        location /webcam2/ {{
            proxy_pass http://{dedicated}/;
            proxy_buffering off;
        }}
        location /buffered/ {{
            proxy_pass http://{main}/;
        }}
        # MainsailOS's stock block: an upstream name, no X-Forwarded-* headers.
        location /stock/ {{
            proxy_pass http://mjpgstreamer1/;
            proxy_buffering off;
        }}
    }}
    upstream mjpgstreamer1 {{
        server {main};
    }}
}}
"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx runs (packaging/dev.sh deps installs nginx-light)");
        super::eventually_blocking(Duration::from_secs(20), "nginx listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        terminate(&mut self.child, libc::SIGQUIT);
    }
}
