"""What tests share and the product never imports: fakes of the Kubernetes API and of the
kind, istioctl and kubectl command lines (k8s_fake), a structural check of the waypoint
Gateway (gateway_schema), a free loopback port (ports), an Envoy's admin stats
(envoy_admin). Tests import them as `tests.support.<module>`."""
