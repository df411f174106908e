variable "region" {
  description = "Region of the store (the load balancer and the secrets)."
  type        = string
}

variable "name" {
  description = "Name prefix, e.g. `magento-production`."
  type        = string
}

variable "aliases" {
  description = "The store's host names."
  type        = list(string)
}

variable "acm_certificate_arn" {
  description = "ACM certificate (us-east-1) for `aliases`."
  type        = string
}

variable "origin_domain_name" {
  description = "The load balancer in front of the magestack edges (created by the AWS Load Balancer Controller for the frontend Service)."
  type        = string
}

variable "origin_verify_header_secret_arn" {
  description = "Secrets Manager ARN of the X-Origin-Verify value."
  type        = string
}

variable "state_bucket" {
  description = "S3 bucket of the Terraform states (the data stack's is read from it)."
  type        = string
}

variable "origin_ingress_group" {
  description = "IngressGroup of the storefront's ALB."
  type        = string
  default     = "magento-frontend"
}

variable "admin_domain_name" {
  description = "The admin's host name (its own ALB)."
  type        = string
}

variable "admin_ingress_group" {
  description = "IngressGroup of the admin's ALB."
  type        = string
  default     = "magento-admin"
}

variable "route53_zone_id" {
  description = "Hosted zone of `aliases`."
  type        = string
}

variable "admin_path" {
  description = "Magento's admin path, rate-limited by the WAF."
  type        = string
  default     = "/admin/"
}

variable "magestack_cdn" {
  description = "From `magestack cdn export --format terraform` (envs/<env>/magestack-cdn.tfvars)."
  type        = any
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
