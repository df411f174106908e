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

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = alltrue([for a in var.aliases : !can(regex("(^|\\.)(example\\.(com|net|org)|example|test|invalid|localhost)$", a))])
    error_message = "Placeholder: aliases hold an example domain (RFC 2606): set the store's host names."
  }
}

variable "acm_certificate_arn" {
  description = "ACM certificate (us-east-1) for `aliases`."
  type        = string

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = !can(regex(":(000000000000|111111111111|222222222222|333333333333|444444444444|555555555555|666666666666|777777777777|888888888888|999999999999|123456789012):|/0{8}-0{4}-0{4}-0{4}-0{12}$", var.acm_certificate_arn))
    error_message = "Placeholder: acm_certificate_arn is the example (documentation account or zero id): set the us-east-1 certificate of the store's host names."
  }
}

variable "origin_domain_name" {
  description = "The load balancer in front of the magestack edges (created by the AWS Load Balancer Controller for the frontend Service)."
  type        = string

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = !can(regex("(^|\\.)(example\\.(com|net|org)|example|test|invalid|localhost)$", var.origin_domain_name))
    error_message = "Placeholder: origin_domain_name is an example domain (RFC 2606): set the origin host the ALB answers for."
  }
}

variable "origin_verify_header_secret_arn" {
  description = "Secrets Manager ARN of the X-Origin-Verify value."
  type        = string

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = !can(regex(":(000000000000|111111111111|222222222222|333333333333|444444444444|555555555555|666666666666|777777777777|888888888888|999999999999|123456789012):", var.origin_verify_header_secret_arn))
    error_message = "Placeholder: origin_verify_header_secret_arn names the example account: set the ARN of magento/origin-verify in this account."
  }
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

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = !can(regex("(^|\\.)(example\\.(com|net|org)|example|test|invalid|localhost)$", var.admin_domain_name))
    error_message = "Placeholder: admin_domain_name is an example domain (RFC 2606): set the admin host name."
  }
}

variable "admin_ingress_group" {
  description = "IngressGroup of the admin's ALB."
  type        = string
  default     = "magento-admin"
}

variable "route53_zone_id" {
  description = "Hosted zone of `aliases`."
  type        = string

  # Required, and never the checked-in example: a placeholder must not reach an apply.
  validation {
    condition     = !can(regex("^Z0+[0-9]?$", var.route53_zone_id))
    error_message = "Placeholder: route53_zone_id is the example (Z000…): set the hosted zone of the store's domain."
  }
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
