# terraform -chdir=deploy/terraform/stacks/cdn plan \
#   -var-file=../../envs/staging/cdn.tfvars -var-file=../../envs/staging/magestack-cdn.tfvars
region                          = "eu-west-1"
name                            = "magento-staging"
aliases                         = ["staging.shop.example.com"]
acm_certificate_arn             = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
origin_domain_name              = "origin.staging.shop.example.com"
origin_verify_header_secret_arn = "arn:aws:secretsmanager:eu-west-1:111111111111:secret:magento/origin-verify"
state_bucket                    = "magento-staging-terraform-state"
# The admin: its own ALB (3600 s idle timeout), reachable from the operators' networks only.
admin_domain_name = "admin.staging.shop.example.com"
route53_zone_id   = "Z00000000000000000001"
tags = {
  environment = "staging"
  managed-by  = "terraform"
}
