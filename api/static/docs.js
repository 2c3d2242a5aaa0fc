// /docs: Swagger UI (vendored in /static/swagger-ui/) on the app's own OpenAPI document.
// No validator badge (it would call validator.swagger.io): nothing leaves the origin.
window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayOperationId: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
