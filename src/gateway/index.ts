export { Gateway, KERNEL_CELLS, UPSTREAM_HEADERS_TIMEOUT_MS, endToEndHeaders, type GatewayOptions, type RouteEndpoint } from './gateway.js';
